# An optional Kinesis data stream for real-time log delivery (producers put records; logyard
# reads them). On-demand capacity, encrypted with logyard's key.
resource "aws_kinesis_stream" "logs" {
  count = var.enable_kinesis ? 1 : 0

  name             = "${var.name}-logs"
  retention_period = var.kinesis_retention_hours
  encryption_type  = "KMS"
  kms_key_id       = aws_kms_key.logyard.arn

  stream_mode_details {
    stream_mode = "ON_DEMAND"
  }
}
