# Athena and Spark over logyard's tables: a Glue database that `logyard catalog glue` (the
# chart's `catalog` CronJob) fills with one table per stream, and an Athena workgroup whose
# results stay in the bucket, encrypted with logyard's key, with a cap on the bytes a query
# may scan (Athena bills by the terabyte scanned).
resource "aws_glue_catalog_database" "logs" {
  count = var.enable_athena ? 1 : 0

  name        = var.glue_database
  description = "logyard stream tables (Delta Lake), registered by logyard catalog glue"
}

resource "aws_athena_workgroup" "logs" {
  count = var.enable_athena ? 1 : 0

  name          = "${var.name}-logs"
  force_destroy = false

  configuration {
    enforce_workgroup_configuration    = true
    publish_cloudwatch_metrics_enabled = true
    bytes_scanned_cutoff_per_query     = var.athena_bytes_scanned_cutoff

    engine_version {
      selected_engine_version = "AUTO"
    }

    result_configuration {
      output_location = "s3://${aws_s3_bucket.logyard.bucket}/athena-results/"

      encryption_configuration {
        encryption_option = "SSE_KMS"
        kms_key_arn       = aws_kms_key.logyard.arn
      }
    }
  }
}
