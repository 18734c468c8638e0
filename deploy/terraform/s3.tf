# The logyard bucket: tables, archive, uploads and reports under PREFIX/, the ALB's access
# logs under ALB_PREFIX/. Private, TLS-only, versioned, encrypted.
resource "aws_s3_bucket" "logyard" {
  bucket = local.bucket_name
}

resource "aws_s3_bucket_public_access_block" "logyard" {
  bucket = aws_s3_bucket.logyard.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "logyard" {
  bucket = aws_s3_bucket.logyard.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

# SSE-S3: the only server-side encryption ALB access-log delivery supports.
resource "aws_s3_bucket_server_side_encryption_configuration" "logyard" {
  bucket = aws_s3_bucket.logyard.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_versioning" "logyard" {
  bucket = aws_s3_bucket.logyard.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_logging" "logyard" {
  count = var.s3_access_log_bucket == "" ? 0 : 1

  bucket        = aws_s3_bucket.logyard.id
  target_bucket = var.s3_access_log_bucket
  target_prefix = "${local.bucket_name}/"
}

resource "aws_s3_bucket_lifecycle_configuration" "logyard" {
  bucket = aws_s3_bucket.logyard.id

  # Whole bucket: unfinished multipart uploads are aborted after a day; replaced or deleted
  # versions (compaction and vacuum rewrite files) are kept for a while, then removed.
  rule {
    id     = "housekeeping"
    status = "Enabled"

    filter {}

    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }

    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_expiration_days
    }

    expiration {
      expired_object_delete_marker = true
    }
  }

  # Direct uploads wait under incoming/ until logyard has ingested and archived them.
  rule {
    id     = "incoming-expires"
    status = "Enabled"

    filter {
      prefix = "${local.storage_prefix}/incoming/"
    }

    expiration {
      days = var.incoming_expiration_days
    }
  }

  # The raw archive is read rarely but must come back in milliseconds (ranged GETs).
  rule {
    id     = "archive-to-glacier-ir"
    status = "Enabled"

    filter {
      prefix = "${local.storage_prefix}/archive/"
    }

    transition {
      days          = var.archive_glacier_ir_days
      storage_class = "GLACIER_IR"
    }
  }

  # Athena's query results (the workgroup of athena.tf) are read once, by whoever ran the query.
  rule {
    id     = "athena-results-expire"
    status = "Enabled"

    filter {
      prefix = "athena-results/"
    }

    expiration {
      days = 7
    }
  }

  depends_on = [aws_s3_bucket_versioning.logyard]
}

data "aws_elb_service_account" "this" {
  count = var.elb_legacy_log_delivery ? 1 : 0
}

data "aws_iam_policy_document" "bucket" {
  # TLS only: every request over plain HTTP, or older than TLS 1.2, is refused.
  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.logyard.arn,
      "${aws_s3_bucket.logyard.arn}/*",
    ]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }

  statement {
    sid     = "DenyOutdatedTls"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.logyard.arn,
      "${aws_s3_bucket.logyard.arn}/*",
    ]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "NumericLessThan"
      variable = "s3:TlsVersion"
      values   = ["1.2"]
    }
  }

  # ALB access logs: s3://BUCKET/ALB_PREFIX/AWSLogs/<account>/elasticloadbalancing/<region>/...
  statement {
    sid       = "AlbAccessLogDelivery"
    effect    = "Allow"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.logyard.arn}/${local.alb_log_prefix}/AWSLogs/${local.account_id}/*"]

    principals {
      type        = "Service"
      identifiers = ["logdelivery.elasticloadbalancing.amazonaws.com"]
    }
  }

  dynamic "statement" {
    for_each = data.aws_elb_service_account.this
    content {
      sid       = "AlbAccessLogDeliveryLegacyRegion"
      effect    = "Allow"
      actions   = ["s3:PutObject"]
      resources = ["${aws_s3_bucket.logyard.arn}/${local.alb_log_prefix}/AWSLogs/${local.account_id}/*"]

      principals {
        type        = "AWS"
        identifiers = [statement.value.arn]
      }
    }
  }
}

resource "aws_s3_bucket_policy" "logyard" {
  bucket = aws_s3_bucket.logyard.id
  policy = data.aws_iam_policy_document.bucket.json

  depends_on = [aws_s3_bucket_public_access_block.logyard]
}
