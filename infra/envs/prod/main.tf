provider "aws" {
  region = var.aws_region

  default_tags {
    tags = merge(var.tags, {
      Project     = var.project
      Environment = var.environment
      ManagedBy   = "terraform"
    })
  }
}

locals {
  name        = "${var.project}-${var.environment}"
  bucket_name = coalesce(var.artifacts_bucket_name, "${local.name}-mlflow-artifacts-${var.aws_region}")
  ami_id      = coalesce(var.ami_id, try(data.aws_ami.debian12[0].id, null))
  kms_key_arn = var.create_kms_key ? aws_kms_key.this[0].arn : null

  # Least privilege on the artifact bucket: list under the prefix, read/write objects under it.
  s3_statements = [
    {
      Sid       = "ListArtifactPrefix"
      Effect    = "Allow"
      Action    = ["s3:ListBucket", "s3:GetBucketLocation"]
      Resource  = [module.artifacts.bucket_arn]
      Condition = { StringLike = { "s3:prefix" = ["", "${var.artifacts_prefix}", "${var.artifacts_prefix}/*"] } }
    },
    {
      Sid      = "ReadWriteArtifacts"
      Effect   = "Allow"
      Action   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
      Resource = ["${module.artifacts.bucket_arn}/${var.artifacts_prefix}/*"]
    },
  ]
  kms_statements = var.create_kms_key ? [{
    Sid      = "UseArtifactAndSecretKey"
    Effect   = "Allow"
    Action   = ["kms:Decrypt", "kms:GenerateDataKey"]
    Resource = [local.kms_key_arn]
  }] : []
  # The MLflow host reads the RDS master-user password at service start: that one secret only.
  secret_statements = [{
    Sid      = "ReadDatabaseSecret"
    Effect   = "Allow"
    Action   = ["secretsmanager:GetSecretValue"]
    Resource = [module.database.master_user_secret_arn]
  }]
}

data "aws_ami" "debian12" {
  count = var.ami_id == null ? 1 : 0

  most_recent = true
  owners      = ["136693071363"]

  filter {
    name   = "name"
    values = ["debian-12-amd64-*"]
  }

  filter {
    name   = "architecture"
    values = ["x86_64"]
  }
}

resource "aws_kms_key" "this" {
  #checkov:skip=CKV2_AWS_64:The default key policy delegates to IAM in this account; access is granted by the scoped role policies.
  count = var.create_kms_key ? 1 : 0

  description             = "${local.name}: MLflow artifacts, RDS storage and master-user secret"
  enable_key_rotation     = true
  deletion_window_in_days = 30
}

resource "aws_kms_alias" "this" {
  count = var.create_kms_key ? 1 : 0

  name          = "alias/${local.name}"
  target_key_id = aws_kms_key.this[0].key_id
}

module "network" {
  source = "../../modules/network"

  name               = local.name
  create_vpc         = var.create_vpc
  vpc_cidr           = var.vpc_cidr
  azs                = var.azs
  vpc_id             = var.vpc_id
  public_subnet_ids  = var.public_subnet_ids
  private_subnet_ids = var.private_subnet_ids
}

module "security_groups" {
  source = "../../modules/security_groups"

  name          = local.name
  vpc_id        = module.network.vpc_id
  allowed_cidrs = var.allowed_cidrs
  admin_cidrs   = var.admin_cidrs
}

module "artifacts" {
  source = "../../modules/artifact_bucket"

  bucket_name                        = local.bucket_name
  sse_algorithm                      = var.artifacts_sse_algorithm
  kms_key_arn                        = local.kms_key_arn
  noncurrent_version_expiration_days = var.artifacts_noncurrent_days
  access_log_bucket                  = var.artifacts_access_log_bucket
  force_destroy                      = var.artifacts_force_destroy
}

module "database" {
  source = "../../modules/database"

  identifier            = local.name
  subnet_ids            = module.network.private_subnet_ids
  security_group_ids    = [module.security_groups.db_security_group_id]
  instance_class        = var.db_instance_class
  engine_version        = var.db_engine_version
  allocated_storage     = var.db_allocated_storage
  kms_key_arn           = local.kms_key_arn
  backup_retention_days = var.db_backup_retention_days
  multi_az              = var.db_multi_az
  enable_monitoring     = var.enable_db_monitoring
  parameters            = var.db_parameters
  deletion_protection   = var.db_deletion_protection
  skip_final_snapshot   = var.db_skip_final_snapshot
}

module "mlflow" {
  source = "../../modules/xeon_hosts"

  name                       = "${local.name}-mlflow"
  instance_count             = 1
  instance_type              = var.mlflow_instance_type
  ami_id                     = local.ami_id
  subnet_ids                 = module.network.public_subnet_ids
  security_group_ids         = [module.security_groups.mlflow_security_group_id]
  key_name                   = var.key_name
  root_volume_size           = var.root_volume_size
  root_volume_kms_key_arn    = local.kms_key_arn
  enable_ssm                 = var.enable_ssm
  enable_detailed_monitoring = var.enable_detailed_monitoring
  policy_json = jsonencode({
    Version   = "2012-10-17"
    Statement = concat(local.s3_statements, local.kms_statements, local.secret_statements)
  })
}

module "trainers" {
  source = "../../modules/xeon_hosts"
  count  = var.trainer_count > 0 ? 1 : 0

  name                       = "${local.name}-trainer"
  instance_count             = var.trainer_count
  instance_type              = var.trainer_instance_type
  ami_id                     = local.ami_id
  subnet_ids                 = module.network.public_subnet_ids
  security_group_ids         = [module.security_groups.trainer_security_group_id]
  key_name                   = var.key_name
  root_volume_size           = var.root_volume_size
  root_volume_kms_key_arn    = local.kms_key_arn
  enable_ssm                 = var.enable_ssm
  enable_detailed_monitoring = var.enable_detailed_monitoring
  policy_json = jsonencode({
    Version   = "2012-10-17"
    Statement = concat(local.s3_statements, local.kms_statements)
  })
}

resource "aws_route53_record" "mlflow" {
  count = var.route53_zone_id != null && var.dns_name != null ? 1 : 0

  zone_id = var.route53_zone_id
  name    = var.dns_name
  type    = "A"
  ttl     = 300
  records = module.mlflow.public_ips
}
