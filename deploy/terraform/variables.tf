variable "name" {
  description = "Name of the cluster and prefix of every resource."
  type        = string
  default     = "logyard"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}[a-z0-9]$", var.name))
    error_message = "name: 3-32 lower-case letters, digits and dashes."
  }
}

variable "region" {
  description = "AWS Region, e.g. eu-west-1."
  type        = string
}

variable "tags" {
  description = "Tags for every resource (provider default_tags)."
  type        = map(string)
  default = {
    Application = "logyard"
    ManagedBy   = "terraform"
  }
}

# --- network -----------------------------------------------------------------------------

variable "vpc_cidr" {
  description = "VPC CIDR. A /16 gives each zone a /19 private subnet (8,190 addresses: room for VPC CNI prefix delegation), a /24 public and a /24 database subnet."
  type        = string
  default     = "10.0.0.0/16"
}

variable "az_count" {
  description = "Availability zones to use (at least 2; RDS and the ALB need two)."
  type        = number
  default     = 3

  validation {
    condition     = var.az_count >= 2 && var.az_count <= 6
    error_message = "az_count must be between 2 and 6."
  }
}

variable "azs" {
  description = "Availability zone names to use, e.g. [\"eu-west-1a\", \"eu-west-1b\", \"eu-west-1c\"]. Empty: the first az_count zones of the Region."
  type        = list(string)
  default     = []
}

variable "single_nat_gateway" {
  description = "One NAT gateway for the whole VPC (cheaper; a zone outage cuts egress of the other zones) instead of one per zone."
  type        = bool
  default     = true
}

variable "enable_flow_log" {
  description = "VPC flow logs to CloudWatch Logs."
  type        = bool
  default     = true
}

# --- cluster -----------------------------------------------------------------------------

variable "kubernetes_version" {
  description = "EKS Kubernetes version."
  type        = string
  default     = "1.34"
}

variable "endpoint_public_access" {
  description = "Reach the Kubernetes API from outside the VPC (restrict endpoint_public_access_cidrs)."
  type        = bool
  default     = true
}

variable "endpoint_public_access_cidrs" {
  description = "CIDRs allowed to reach the public Kubernetes API endpoint."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "spot_instance_types" {
  description = "Instance types of the SPOT node group (stateless work: jobs, controllers). Several types and families keep SPOT capacity available."
  type        = list(string)
  default     = ["m5.large", "m5a.large", "m6i.large", "m6a.large", "m7i.large"]

  validation {
    condition     = length(var.spot_instance_types) >= 3
    error_message = "Give the SPOT node group at least three instance types."
  }
}

variable "spot_node_group" {
  description = "Sizes of the SPOT node group."
  type = object({
    min_size     = number
    max_size     = number
    desired_size = number
  })
  default = {
    min_size     = 2
    max_size     = 10
    desired_size = 2
  }
}

variable "on_demand_instance_types" {
  description = "Instance types of the small on-demand node group that runs the logyard StatefulSet."
  type        = list(string)
  default     = ["m6i.large", "m7i.large"]
}

variable "on_demand_node_group" {
  description = "Sizes of the on-demand node group (one node per zone the server runs in)."
  type = object({
    min_size     = number
    max_size     = number
    desired_size = number
  })
  default = {
    min_size     = 2
    max_size     = 6
    desired_size = 2
  }
}

variable "lb_controller_chart_version" {
  description = "Version of the aws-load-balancer-controller Helm chart (eks-charts)."
  type        = string
  default     = "1.14.0"
}

# --- logyard -----------------------------------------------------------------------------

variable "namespace" {
  description = "Kubernetes namespace logyard is installed in."
  type        = string
  default     = "logyard"
}

variable "service_account" {
  description = "Kubernetes service account of logyard (the chart's serviceAccount.name)."
  type        = string
  default     = "logyard"
}

variable "logyard_auth" {
  description = "How logyard's pods get AWS credentials: pod_identity (EKS Pod Identity association) or irsa (IAM roles for service accounts: annotate the service account with the role ARN)."
  type        = string
  default     = "pod_identity"

  validation {
    condition     = contains(["pod_identity", "irsa"], var.logyard_auth)
    error_message = "logyard_auth must be pod_identity or irsa."
  }
}

variable "bucket_name" {
  description = "Name of the logyard bucket. Default: <name>-<account id>-<region>."
  type        = string
  default     = ""
}

variable "storage_prefix" {
  description = "Prefix of logyard's storage in the bucket (the chart's storage.url is s3://BUCKET/PREFIX)."
  type        = string
  default     = "logyard"
}

variable "alb_log_prefix" {
  description = "Prefix the ALB writes its access logs under (the chart's ingress.accessLogs.prefix)."
  type        = string
  default     = "alb"
}

variable "incoming_expiration_days" {
  description = "Days after which objects under PREFIX/incoming/ (direct uploads) expire; logyard ingests and archives them long before."
  type        = number
  default     = 7
}

variable "archive_glacier_ir_days" {
  description = "Days after which objects under PREFIX/archive/ move to S3 Glacier Instant Retrieval."
  type        = number
  default     = 30
}

variable "noncurrent_version_expiration_days" {
  description = "Days a replaced or deleted object version is kept (the bucket is versioned)."
  type        = number
  default     = 30
}

variable "elb_legacy_log_delivery" {
  description = "Also let the Region's Elastic Load Balancing account write access logs (needed in Regions opened before August 2022; newer ones use only the logdelivery.elasticloadbalancing.amazonaws.com service principal)."
  type        = bool
  default     = true
}

variable "s3_access_log_bucket" {
  description = "Bucket for S3 server access logs of the logyard bucket (empty: none)."
  type        = string
  default     = ""
}

# --- orders database (RDS PostgreSQL) ---------------------------------------------------

variable "enable_rds" {
  description = "Create an RDS PostgreSQL 16 instance (the shop's orders database) in the database subnets."
  type        = bool
  default     = true
}

variable "rds_engine_version" {
  description = "PostgreSQL version (major, or major.minor)."
  type        = string
  default     = "16"
}

variable "rds_instance_class" {
  description = "RDS instance class."
  type        = string
  default     = "db.t4g.medium"
}

variable "rds_allocated_storage" {
  description = "Initial storage in GiB (gp3; grows up to rds_max_allocated_storage)."
  type        = number
  default     = 50
}

variable "rds_max_allocated_storage" {
  description = "Storage autoscaling limit in GiB."
  type        = number
  default     = 500
}

variable "rds_multi_az" {
  description = "A standby in another zone."
  type        = bool
  default     = true
}

variable "rds_database_name" {
  description = "Name of the database created in the instance."
  type        = string
  default     = "shop"
}

variable "rds_master_username" {
  description = "Master user; its password is generated and kept in Secrets Manager (manage_master_user_password)."
  type        = string
  default     = "shop_admin"
}

variable "rds_logyard_user" {
  description = "Database user logyard connects as with RDS IAM authentication (create it with GRANT rds_iam, read-only on the orders tables)."
  type        = string
  default     = "logyard_reader"
}

variable "enable_rds_proxy" {
  description = "Put an RDS Proxy (TLS required) in front of the database."
  type        = bool
  default     = false
}

# --- optional parts ----------------------------------------------------------------------

variable "enable_fargate" {
  description = "A Fargate profile for logyard's server pods (the chart's fargate.enabled): no nodes to run, every ingest answered once committed to S3."
  type        = bool
  default     = false
}

variable "enable_athena" {
  description = "Create the Glue database logyard registers its stream tables in, and an Athena workgroup to query them."
  type        = bool
  default     = true
}

variable "glue_database" {
  description = "The Glue database of the stream tables (the chart's cronJobs.catalog.database)."
  type        = string
  default     = "shop_logs"

  validation {
    condition     = can(regex("^[a-z0-9_]{1,255}$", var.glue_database))
    error_message = "glue_database: lower-case letters, digits and underscores (Athena's advice)."
  }
}

variable "athena_bytes_scanned_cutoff" {
  description = "Bytes an Athena query of the workgroup may scan before it is cancelled (billed per terabyte scanned)."
  type        = number
  default     = 1099511627776
}

variable "storage_role_arn" {
  description = "A role in another account that logyard assumes for a bucket there (logyard's storage.s3_role_arn); empty: none. The role's trust policy must allow sts:AssumeRole to logyard's role (output logyard_role_arn), with an sts:ExternalId condition if you set storage.s3_role_external_id."
  type        = string
  default     = ""

  validation {
    condition     = var.storage_role_arn == "" || can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:role/.+$", var.storage_role_arn))
    error_message = "storage_role_arn must be a role ARN: arn:aws:iam::<account>:role/<name>."
  }
}

variable "enable_kinesis" {
  description = "Create a Kinesis data stream (on-demand, KMS-encrypted) that logyard may read."
  type        = bool
  default     = false
}

variable "kinesis_retention_hours" {
  description = "Retention of the Kinesis stream in hours."
  type        = number
  default     = 24
}

variable "enable_karpenter" {
  description = "Install Karpenter (controller on the on-demand node group) with a NodePool mixing SPOT and on-demand capacity."
  type        = bool
  default     = false
}

variable "karpenter_chart_version" {
  description = "Version of the Karpenter Helm chart (oci://public.ecr.aws/karpenter/karpenter)."
  type        = string
  default     = "1.8.1"
}
