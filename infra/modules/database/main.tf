locals {
  # TLS-only connections whatever var.parameters says: rds.force_ssl is merged in last.
  parameters = merge(var.parameters, { "rds.force_ssl" = "1" })
}

resource "aws_db_subnet_group" "this" {
  name       = var.identifier
  subnet_ids = var.subnet_ids

  tags = var.tags
}

resource "aws_db_parameter_group" "this" {
  name   = var.identifier
  family = var.parameter_group_family

  dynamic "parameter" {
    for_each = local.parameters

    content {
      name  = parameter.key
      value = parameter.value
    }
  }

  tags = var.tags

  lifecycle {
    create_before_destroy = true
  }
}

data "aws_iam_policy_document" "monitoring_assume" {
  count = var.enable_monitoring ? 1 : 0

  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["monitoring.rds.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "monitoring" {
  count = var.enable_monitoring ? 1 : 0

  name_prefix        = "${substr(var.identifier, 0, 24)}-rds-mon-"
  assume_role_policy = data.aws_iam_policy_document.monitoring_assume[0].json

  tags = var.tags
}

resource "aws_iam_role_policy_attachment" "monitoring" {
  count = var.enable_monitoring ? 1 : 0

  role       = aws_iam_role.monitoring[0].name
  policy_arn = "arn:aws:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"
}

resource "aws_db_instance" "this" {
  #checkov:skip=CKV_AWS_161:MLflow connects with the Secrets Manager-managed password; IAM auth tokens are not supported by its SQLAlchemy URL.
  #checkov:skip=CKV2_AWS_69:rds.force_ssl = 1 is merged last into local.parameters, so no input can turn it off, but it reaches the parameter group through a dynamic block checkov cannot resolve; asserted by terraform test.
  #checkov:skip=CKV2_AWS_30:Query logging is set with log_min_duration_statement (slow queries) rather than log_statement=all.
  identifier     = var.identifier
  engine         = "postgres"
  engine_version = var.engine_version
  instance_class = var.instance_class

  allocated_storage     = var.allocated_storage
  max_allocated_storage = var.max_allocated_storage > 0 ? var.max_allocated_storage : null
  storage_type          = "gp3"
  storage_encrypted     = true
  kms_key_id            = var.kms_key_arn

  db_name                       = var.db_name
  username                      = var.username
  port                          = var.port
  manage_master_user_password   = true
  master_user_secret_kms_key_id = var.kms_key_arn

  db_subnet_group_name   = aws_db_subnet_group.this.name
  vpc_security_group_ids = var.security_group_ids
  parameter_group_name   = aws_db_parameter_group.this.name
  publicly_accessible    = false
  multi_az               = var.multi_az

  backup_retention_period   = var.backup_retention_days
  backup_window             = "02:00-03:00"
  maintenance_window        = "sun:03:30-sun:04:30"
  copy_tags_to_snapshot     = true
  deletion_protection       = var.deletion_protection
  skip_final_snapshot       = var.skip_final_snapshot
  final_snapshot_identifier = var.skip_final_snapshot ? null : "${var.identifier}-final"

  auto_minor_version_upgrade      = true
  enabled_cloudwatch_logs_exports = ["postgresql", "upgrade"]

  monitoring_interval                   = var.enable_monitoring ? 60 : 0
  monitoring_role_arn                   = var.enable_monitoring ? aws_iam_role.monitoring[0].arn : null
  performance_insights_enabled          = var.enable_monitoring
  performance_insights_kms_key_id       = var.enable_monitoring ? var.kms_key_arn : null
  performance_insights_retention_period = var.enable_monitoring ? 7 : null

  tags = var.tags

  depends_on = [aws_iam_role_policy_attachment.monitoring]
}
