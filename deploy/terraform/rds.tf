# RDS PostgreSQL 16 for the shop's orders, in the database subnets, reachable only from the
# cluster's nodes, TLS forced, master password generated and rotated by Secrets Manager.
# Clients verify the server with the global RDS CA bundle (the logyard image carries it).
resource "aws_security_group" "rds" {
  count = var.enable_rds ? 1 : 0

  name        = "${var.name}-orders-db"
  description = "Orders database: PostgreSQL from the EKS nodes only"
  vpc_id      = module.vpc.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "rds_from_nodes" {
  count = var.enable_rds ? 1 : 0

  security_group_id            = aws_security_group.rds[0].id
  description                  = "PostgreSQL from the EKS nodes (and their pods)"
  referenced_security_group_id = module.eks.node_security_group_id
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
}

# The optional RDS Proxy shares the group: it takes connections from the nodes and opens its
# own to the database.
resource "aws_vpc_security_group_ingress_rule" "rds_from_proxy" {
  count = var.enable_rds && var.enable_rds_proxy ? 1 : 0

  security_group_id            = aws_security_group.rds[0].id
  description                  = "PostgreSQL from the RDS Proxy"
  referenced_security_group_id = aws_security_group.rds[0].id
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
}

resource "aws_vpc_security_group_egress_rule" "proxy_to_rds" {
  count = var.enable_rds && var.enable_rds_proxy ? 1 : 0

  security_group_id            = aws_security_group.rds[0].id
  description                  = "RDS Proxy to the database"
  referenced_security_group_id = aws_security_group.rds[0].id
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
}

resource "aws_db_parameter_group" "orders" {
  count = var.enable_rds ? 1 : 0

  name        = "${var.name}-orders-pg16"
  family      = "postgres16"
  description = "${var.name} orders database: TLS only"

  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }

  parameter {
    name  = "log_min_duration_statement"
    value = "1000"
  }
}

resource "aws_iam_role" "rds_monitoring" {
  count = var.enable_rds ? 1 : 0

  name = "${var.name}-rds-monitoring"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Action    = "sts:AssumeRole"
      Principal = { Service = "monitoring.rds.amazonaws.com" }
    }]
  })
}

resource "aws_iam_role_policy_attachment" "rds_monitoring" {
  count = var.enable_rds ? 1 : 0

  role       = aws_iam_role.rds_monitoring[0].name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"
}

resource "aws_db_instance" "orders" {
  count = var.enable_rds ? 1 : 0

  identifier     = "${var.name}-orders"
  engine         = "postgres"
  engine_version = var.rds_engine_version
  instance_class = var.rds_instance_class

  allocated_storage     = var.rds_allocated_storage
  max_allocated_storage = var.rds_max_allocated_storage
  storage_type          = "gp3"
  storage_encrypted     = true
  kms_key_id            = aws_kms_key.logyard.arn

  db_name                       = var.rds_database_name
  username                      = var.rds_master_username
  manage_master_user_password   = true
  master_user_secret_kms_key_id = aws_kms_key.logyard.arn

  iam_database_authentication_enabled = true
  ca_cert_identifier                  = "rds-ca-rsa2048-g1"

  db_subnet_group_name   = module.vpc.database_subnet_group_name
  vpc_security_group_ids = [aws_security_group.rds[0].id]
  publicly_accessible    = false
  multi_az               = var.rds_multi_az
  parameter_group_name   = aws_db_parameter_group.orders[0].name

  backup_retention_period   = 7
  copy_tags_to_snapshot     = true
  deletion_protection       = true
  skip_final_snapshot       = false
  final_snapshot_identifier = "${var.name}-orders-final"

  auto_minor_version_upgrade = true

  enabled_cloudwatch_logs_exports       = ["postgresql", "upgrade"]
  monitoring_interval                   = 60
  monitoring_role_arn                   = aws_iam_role.rds_monitoring[0].arn
  performance_insights_enabled          = true
  performance_insights_kms_key_id       = aws_kms_key.logyard.arn
  performance_insights_retention_period = 7

  depends_on = [aws_iam_role_policy_attachment.rds_monitoring]
}

# --- optional RDS Proxy ------------------------------------------------------------------

resource "aws_iam_role" "rds_proxy" {
  count = var.enable_rds && var.enable_rds_proxy ? 1 : 0

  name = "${var.name}-rds-proxy"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Action    = "sts:AssumeRole"
      Principal = { Service = "rds.amazonaws.com" }
    }]
  })
}

resource "aws_iam_role_policy" "rds_proxy" {
  count = var.enable_rds && var.enable_rds_proxy ? 1 : 0

  name = "read-master-secret"
  role = aws_iam_role.rds_proxy[0].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Effect   = "Allow"
        Action   = ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"]
        Resource = local.rds_secret_arn
      },
      {
        Effect    = "Allow"
        Action    = "kms:Decrypt"
        Resource  = aws_kms_key.logyard.arn
        Condition = { StringEquals = { "kms:ViaService" = "secretsmanager.${var.region}.amazonaws.com" } }
      },
    ]
  })
}

resource "aws_db_proxy" "orders" {
  count = var.enable_rds && var.enable_rds_proxy ? 1 : 0

  name                   = "${var.name}-orders"
  engine_family          = "POSTGRESQL"
  role_arn               = aws_iam_role.rds_proxy[0].arn
  vpc_subnet_ids         = module.vpc.database_subnets
  vpc_security_group_ids = [aws_security_group.rds[0].id]
  require_tls            = true
  idle_client_timeout    = 1800

  auth {
    auth_scheme               = "SECRETS"
    secret_arn                = local.rds_secret_arn
    iam_auth                  = "DISABLED"
    client_password_auth_type = "POSTGRES_SCRAM_SHA_256"
  }
}

resource "aws_db_proxy_default_target_group" "orders" {
  count = var.enable_rds && var.enable_rds_proxy ? 1 : 0

  db_proxy_name = aws_db_proxy.orders[0].name

  connection_pool_config {
    max_connections_percent = 50
  }
}

resource "aws_db_proxy_target" "orders" {
  count = var.enable_rds && var.enable_rds_proxy ? 1 : 0

  db_proxy_name          = aws_db_proxy.orders[0].name
  target_group_name      = aws_db_proxy_default_target_group.orders[0].name
  db_instance_identifier = aws_db_instance.orders[0].identifier
}
