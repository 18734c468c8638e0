# logyard's IAM role: least privilege, no wildcard actions. Its bucket prefix (read, write,
# delete), the ALB's access logs (read), the orders database secret and IAM auth, the Kinesis
# stream, and optionally a role in the account of a bucket elsewhere. Assumed through an EKS
# Pod Identity association (default) or IRSA.
locals {
  rds_secret_arn = var.enable_rds ? aws_db_instance.orders[0].master_user_secret[0].secret_arn : null
}

data "aws_iam_policy_document" "logyard_trust" {
  dynamic "statement" {
    for_each = var.logyard_auth == "pod_identity" ? [1] : []
    content {
      sid     = "EksPodIdentity"
      effect  = "Allow"
      actions = ["sts:AssumeRole", "sts:TagSession"]

      principals {
        type        = "Service"
        identifiers = ["pods.eks.amazonaws.com"]
      }
    }
  }

  dynamic "statement" {
    for_each = var.logyard_auth == "irsa" ? [1] : []
    content {
      sid     = "Irsa"
      effect  = "Allow"
      actions = ["sts:AssumeRoleWithWebIdentity"]

      principals {
        type        = "Federated"
        identifiers = [module.eks.oidc_provider_arn]
      }

      condition {
        test     = "StringEquals"
        variable = "${module.eks.oidc_provider}:sub"
        values   = ["system:serviceaccount:${var.namespace}:${var.service_account}"]
      }

      condition {
        test     = "StringEquals"
        variable = "${module.eks.oidc_provider}:aud"
        values   = ["sts.amazonaws.com"]
      }
    }
  }
}

resource "aws_iam_role" "logyard" {
  name                 = "${var.name}-logyard"
  description          = "logyard server and jobs (namespace ${var.namespace}, service account ${var.service_account})"
  assume_role_policy   = data.aws_iam_policy_document.logyard_trust.json
  max_session_duration = 3600
}

data "aws_iam_policy_document" "logyard" {
  statement {
    sid       = "ListOwnPrefixes"
    effect    = "Allow"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.logyard.arn]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values = [
        local.storage_prefix,
        "${local.storage_prefix}/*",
        local.alb_log_prefix,
        "${local.alb_log_prefix}/*",
      ]
    }
  }

  # Region check and the sweeper of abandoned multipart uploads (names and ids only).
  statement {
    sid       = "BucketRegionAndUploads"
    effect    = "Allow"
    actions   = ["s3:GetBucketLocation", "s3:ListBucketMultipartUploads"]
    resources = [aws_s3_bucket.logyard.arn]
  }

  statement {
    sid    = "ReadWriteOwnPrefix"
    effect = "Allow"
    actions = [
      "s3:GetObject",
      "s3:PutObject",
      "s3:DeleteObject",
      "s3:AbortMultipartUpload",
      "s3:ListMultipartUploadParts",
    ]
    resources = ["${aws_s3_bucket.logyard.arn}/${local.storage_prefix}/*"]
  }

  statement {
    sid       = "ReadAlbAccessLogs"
    effect    = "Allow"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.logyard.arn}/${local.alb_log_prefix}/AWSLogs/${local.account_id}/*"]
  }

  dynamic "statement" {
    for_each = var.enable_rds ? [1] : []
    content {
      sid       = "OrdersDatabaseSecret"
      effect    = "Allow"
      actions   = ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"]
      resources = [local.rds_secret_arn]
    }
  }

  dynamic "statement" {
    for_each = var.enable_rds ? [1] : []
    content {
      sid       = "OrdersDatabaseIamAuth"
      effect    = "Allow"
      actions   = ["rds-db:connect"]
      resources = ["arn:${local.partition}:rds-db:${var.region}:${local.account_id}:dbuser:${aws_db_instance.orders[0].resource_id}/${var.rds_logyard_user}"]
    }
  }

  dynamic "statement" {
    for_each = var.enable_kinesis ? [1] : []
    content {
      sid    = "ReadKinesisStream"
      effect = "Allow"
      # What `logyard kinesis` and `[[kinesis.streams]]` call (shared-throughput reads;
      # checkpoints and leases live in the bucket, not DynamoDB).
      actions = [
        "kinesis:ListShards",
        "kinesis:GetShardIterator",
        "kinesis:GetRecords",
      ]
      resources = [aws_kinesis_stream.logs[0].arn]
    }
  }

  # `logyard catalog glue`: the tables of its own Glue database, nothing else of the catalog.
  dynamic "statement" {
    for_each = var.enable_athena ? [1] : []
    content {
      sid    = "RegisterTablesInGlue"
      effect = "Allow"
      actions = [
        "glue:GetDatabase",
        "glue:GetTables",
        "glue:GetTable",
        "glue:CreateTable",
        "glue:UpdateTable",
        "glue:DeleteTable",
      ]
      resources = [
        "arn:${local.partition}:glue:${var.region}:${local.account_id}:catalog",
        "arn:${local.partition}:glue:${var.region}:${local.account_id}:database/${var.glue_database}",
        "arn:${local.partition}:glue:${var.region}:${local.account_id}:table/${var.glue_database}/*",
      ]
    }
  }

  # A bucket in another account (`storage.s3_role_arn` in logyard's configuration): this
  # role may assume that account's role; its trust policy there must name this role.
  dynamic "statement" {
    for_each = var.storage_role_arn == "" ? [] : [1]
    content {
      sid       = "AssumeStorageRole"
      effect    = "Allow"
      actions   = ["sts:AssumeRole"]
      resources = [var.storage_role_arn]
    }
  }

  statement {
    sid       = "DecryptThroughSecretsManagerAndKinesis"
    effect    = "Allow"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.logyard.arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values = [
        "secretsmanager.${var.region}.amazonaws.com",
        "kinesis.${var.region}.amazonaws.com",
      ]
    }
  }
}

resource "aws_iam_role_policy" "logyard" {
  name   = "logyard"
  role   = aws_iam_role.logyard.id
  policy = data.aws_iam_policy_document.logyard.json
}

# EKS Pod Identity: pods of this service account in this namespace get the role; the
# chart's service account then needs no annotation.
resource "aws_eks_pod_identity_association" "logyard" {
  count = var.logyard_auth == "pod_identity" ? 1 : 0

  cluster_name    = module.eks.cluster_name
  namespace       = var.namespace
  service_account = var.service_account
  role_arn        = aws_iam_role.logyard.arn
}
