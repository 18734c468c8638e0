# terraform -chdir=deploy/terraform apply -var-file=examples/production.tfvars
name   = "shop-logyard"
region = "eu-west-1"

tags = {
  Application = "logyard"
  Environment = "production"
  ManagedBy   = "terraform"
}

vpc_cidr           = "10.0.0.0/16"
az_count           = 3
single_nat_gateway = true

kubernetes_version           = "1.34"
endpoint_public_access       = true
endpoint_public_access_cidrs = ["203.0.113.0/24"]

spot_instance_types = ["m5.large", "m5a.large", "m6i.large", "m6a.large", "m7i.large"]
spot_node_group = {
  min_size     = 2
  max_size     = 10
  desired_size = 3
}

on_demand_instance_types = ["m6i.large", "m7i.large"]
on_demand_node_group = {
  min_size     = 2
  max_size     = 6
  desired_size = 3
}

logyard_auth   = "pod_identity"
storage_prefix = "logyard"
alb_log_prefix = "alb"

enable_rds         = true
rds_instance_class = "db.m7g.large"
rds_multi_az       = true
enable_rds_proxy   = true

enable_kinesis   = true
enable_karpenter = false
