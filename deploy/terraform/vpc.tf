# The VPC: private subnets for nodes and pods, public subnets for internet-facing ALBs,
# database subnets for RDS. The kubernetes.io/role/* tags are what the AWS Load Balancer
# Controller looks for when an Ingress names no subnets.
locals {
  private_subnets  = [for i, az in local.azs : cidrsubnet(var.vpc_cidr, 3, i)]       # /19 each
  public_subnets   = [for i, az in local.azs : cidrsubnet(var.vpc_cidr, 8, 96 + i)]  # /24 each
  database_subnets = [for i, az in local.azs : cidrsubnet(var.vpc_cidr, 8, 200 + i)] # /24 each
}

module "vpc" {
  source  = "terraform-aws-modules/vpc/aws"
  version = "~> 6.5"

  name = var.name
  cidr = var.vpc_cidr
  azs  = local.azs

  private_subnets  = local.private_subnets
  public_subnets   = local.public_subnets
  database_subnets = local.database_subnets

  create_database_subnet_group = true

  enable_nat_gateway     = true
  single_nat_gateway     = var.single_nat_gateway
  one_nat_gateway_per_az = !var.single_nat_gateway

  enable_dns_hostnames = true
  enable_dns_support   = true

  public_subnet_tags = {
    "kubernetes.io/role/elb" = "1"
  }

  private_subnet_tags = merge(
    { "kubernetes.io/role/internal-elb" = "1" },
    var.enable_karpenter ? { "karpenter.sh/discovery" = var.name } : {},
  )
}

# S3 traffic from the nodes goes through a gateway endpoint: free, and it keeps logyard's
# bulk traffic off the NAT gateway.
module "vpc_endpoints" {
  source  = "terraform-aws-modules/vpc/aws//modules/vpc-endpoints"
  version = "~> 6.5"

  vpc_id = module.vpc.vpc_id

  endpoints = {
    s3 = {
      service         = "s3"
      service_type    = "Gateway"
      route_table_ids = module.vpc.private_route_table_ids
    }
  }
}

module "vpc_flow_log" {
  source  = "terraform-aws-modules/vpc/aws//modules/flow-log"
  version = "~> 6.5"
  count   = var.enable_flow_log ? 1 : 0

  name   = "${var.name}-vpc"
  vpc_id = module.vpc.vpc_id

  cloudwatch_log_group_retention_in_days = 365
}
