provider "aws" {
  region = var.region

  default_tags {
    tags = var.tags
  }
}

# Helm and kubectl reach the new cluster with a short-lived token from the AWS CLI
# (`aws eks get-token`), so no credentials land in the state. The caller gets cluster admin
# through an access entry (enable_cluster_creator_admin_permissions in eks.tf).
provider "helm" {
  kubernetes = {
    host                   = module.eks.cluster_endpoint
    cluster_ca_certificate = base64decode(module.eks.cluster_certificate_authority_data)
    exec = {
      api_version = "client.authentication.k8s.io/v1beta1"
      command     = "aws"
      args        = ["eks", "get-token", "--cluster-name", module.eks.cluster_name, "--region", var.region]
    }
  }
}

provider "kubectl" {
  host                   = module.eks.cluster_endpoint
  cluster_ca_certificate = base64decode(module.eks.cluster_certificate_authority_data)
  load_config_file       = false
  apply_retry_count      = 5
  exec {
    api_version = "client.authentication.k8s.io/v1beta1"
    command     = "aws"
    args        = ["eks", "get-token", "--cluster-name", module.eks.cluster_name, "--region", var.region]
  }
}

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

data "aws_availability_zones" "available" {
  # Regular zones only (no Local Zones or Wavelength).
  filter {
    name   = "opt-in-status"
    values = ["opt-in-not-required"]
  }
}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  # var.azs pins the zones; by default the first az_count zones in name order (a zone AWS
  # adds later sorts after the existing ones, so the choice does not move).
  azs = length(var.azs) > 0 ? var.azs : slice(sort(data.aws_availability_zones.available.names), 0, var.az_count)

  bucket_name = coalesce(var.bucket_name, "${var.name}-${local.account_id}-${var.region}")
  # Where logyard keeps its tables, archive, uploads and reports: s3://BUCKET/PREFIX.
  storage_prefix = trim(var.storage_prefix, "/")
  # Where the ALB writes access logs: s3://BUCKET/ALB_PREFIX/AWSLogs/<account>/elasticloadbalancing/<region>/.
  alb_log_prefix = trim(var.alb_log_prefix, "/")
}
