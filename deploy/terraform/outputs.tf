output "region" {
  description = "AWS Region."
  value       = var.region
}

output "account_id" {
  description = "AWS account id (the chart's aws.accountId)."
  value       = local.account_id
}

output "cluster_name" {
  description = "EKS cluster name."
  value       = module.eks.cluster_name
}

output "configure_kubectl" {
  description = "Command that points kubectl at the cluster."
  value       = "aws eks update-kubeconfig --region ${var.region} --name ${module.eks.cluster_name}"
}

output "vpc_id" {
  description = "VPC id."
  value       = module.vpc.vpc_id
}

output "vpc_cidr" {
  description = "VPC CIDR (the chart's networkPolicy.ingressCidrs)."
  value       = module.vpc.vpc_cidr_block
}

output "private_subnet_ids" {
  description = "Private subnets (nodes, pods, internal ALBs)."
  value       = module.vpc.private_subnets
}

output "public_subnet_ids" {
  description = "Public subnets (the chart's ingress.subnets for an internet-facing ALB)."
  value       = module.vpc.public_subnets
}

output "database_subnet_cidrs" {
  description = "Database subnet CIDRs (the chart's networkPolicy.databaseCidrs)."
  value       = module.vpc.database_subnets_cidr_blocks
}

output "bucket_name" {
  description = "The logyard bucket."
  value       = aws_s3_bucket.logyard.bucket
}

output "storage_url" {
  description = "logyard's storage (the chart's storage.url)."
  value       = "s3://${aws_s3_bucket.logyard.bucket}/${local.storage_prefix}"
}

output "alb_access_logs_url" {
  description = "Where the ALB writes access logs and `logyard import alb` reads them."
  value       = "s3://${aws_s3_bucket.logyard.bucket}/${local.alb_log_prefix}/AWSLogs/${local.account_id}/elasticloadbalancing/${var.region}/"
}

output "logyard_role_arn" {
  description = "logyard's IAM role (with logyard_auth = irsa: the chart's serviceAccount.irsaRoleArn)."
  value       = aws_iam_role.logyard.arn
}

output "rds_address" {
  description = "Orders database host name."
  value       = var.enable_rds ? aws_db_instance.orders[0].address : null
}

output "rds_proxy_endpoint" {
  description = "RDS Proxy host name (TLS required)."
  value       = var.enable_rds && var.enable_rds_proxy ? aws_db_proxy.orders[0].endpoint : null
}

output "rds_master_secret_arn" {
  description = "Secrets Manager secret with the master credentials (RDS JSON format)."
  value       = local.rds_secret_arn
}

output "kinesis_stream_name" {
  description = "Kinesis data stream for logs."
  value       = var.enable_kinesis ? aws_kinesis_stream.logs[0].name : null
}

# Values for the Helm chart: terraform output -raw helm_values > terraform-values.yaml
output "helm_values" {
  description = "Helm values for deploy/helm/logyard that come from this infrastructure."
  value = yamlencode({
    aws = {
      region    = var.region
      accountId = local.account_id
    }
    storage = {
      url = "s3://${aws_s3_bucket.logyard.bucket}/${local.storage_prefix}"
    }
    serviceAccount = {
      name        = var.service_account
      irsaRoleArn = var.logyard_auth == "irsa" ? aws_iam_role.logyard.arn : ""
    }
    ingress = {
      subnets = module.vpc.public_subnets
      accessLogs = {
        bucket = aws_s3_bucket.logyard.bucket
        prefix = local.alb_log_prefix
      }
    }
    networkPolicy = {
      ingressCidrs  = [module.vpc.vpc_cidr_block]
      databaseCidrs = var.enable_rds ? module.vpc.database_subnets_cidr_blocks : []
    }
    nodeSelector = { "eks.amazonaws.com/capacityType" = "ON_DEMAND" }
    cronJobs = {
      catalog = {
        enabled  = var.enable_athena
        database = var.glue_database
      }
    }
  })
}

output "athena_workgroup" {
  description = "The Athena workgroup for queries over the stream tables (empty without enable_athena)."
  value       = var.enable_athena ? aws_athena_workgroup.logs[0].name : ""
}
