# One customer-managed key for logyard's data outside S3: the RDS storage, its managed master
# password in Secrets Manager, Performance Insights and the Kinesis stream. (The bucket uses
# SSE-S3 because ALB access-log delivery supports nothing else.)
resource "aws_kms_key" "logyard" {
  description             = "${var.name}: RDS, Secrets Manager and Kinesis encryption"
  enable_key_rotation     = true
  deletion_window_in_days = 30

  # The default key policy: the account administers the key, and IAM policies grant its use
  # (logyard's role may only decrypt through Secrets Manager and Kinesis; see iam.tf). In a key
  # policy, Resource "*" means this key.
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "AccountAdministersTheKey"
      Effect    = "Allow"
      Principal = { AWS = "arn:${local.partition}:iam::${local.account_id}:root" }
      Action    = "kms:*"
      Resource  = "*"
    }]
  })
}

resource "aws_kms_alias" "logyard" {
  name          = "alias/${var.name}"
  target_key_id = aws_kms_key.logyard.key_id
}

