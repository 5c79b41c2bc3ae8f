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

data "aws_partition" "current" {}
data "aws_caller_identity" "current" {}

locals {
  name        = "${var.project}-${var.environment}"
  bucket_name = var.artifacts_bucket_name != null ? var.artifacts_bucket_name : "${local.name}-mlflow-artifacts-${var.aws_region}"
  log_bucket  = var.log_bucket_name != null ? var.log_bucket_name : "${local.name}-logs-${var.aws_region}"
  ami_id      = coalesce(var.ami_id, try(data.aws_ami.debian12[0].id, null))

  # A canonical IPv4 CIDR (variable validations): decimal octets and a 0-32 prefix without leading
  # zeros, so "0.0.0.0/00" and "010.0.0.0/8" are refused although Go's parser takes them.
  ipv4_cidr_regex = "^((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])/(3[0-2]|[12]?[0-9])$"

  arn_prefix   = "arn:${data.aws_partition.current.partition}"
  account_id   = data.aws_caller_identity.current.account_id
  account_root = "${local.arn_prefix}:iam::${local.account_id}:root"

  # Two customer-managed keys, one per data class: artifacts (S3) and data (RDS storage,
  # Performance Insights, the master-user secret, and the hosts' root volumes, which hold the
  # database credentials the services read).
  artifacts_kms_key_arn = var.create_kms_key ? aws_kms_key.artifacts[0].arn : null
  data_kms_key_arn      = var.create_kms_key ? aws_kms_key.data[0].arn : null

  # Roles that put and get artifacts: the MLflow host and the trainers.
  artifact_role_arns = concat([module.mlflow.role_arn], try([module.trainers[0].role_arn], []))

  # Least privilege on the artifact bucket: list only under the prefix, read/write objects under
  # it; only the MLflow host deletes (MLflow's artifact deletion and gc), never the trainers.
  # Versioning keeps a deleted object as a noncurrent version: nobody gets s3:DeleteObjectVersion.
  s3_list_statements = [
    {
      Sid       = "ListArtifactPrefix"
      Effect    = "Allow"
      Action    = ["s3:ListBucket"]
      Resource  = [module.artifacts.bucket_arn]
      Condition = { StringLike = { "s3:prefix" = ["${var.artifacts_prefix}/", "${var.artifacts_prefix}/*"] } }
    },
    {
      Sid      = "BucketLocation"
      Effect   = "Allow"
      Action   = ["s3:GetBucketLocation"]
      Resource = [module.artifacts.bucket_arn]
    },
  ]
  mlflow_s3_statements = concat(local.s3_list_statements, [{
    Sid      = "ReadWriteDeleteArtifacts"
    Effect   = "Allow"
    Action   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
    Resource = ["${module.artifacts.bucket_arn}/${var.artifacts_prefix}/*"]
  }])
  trainer_s3_statements = concat(local.s3_list_statements, [{
    Sid      = "ReadWriteArtifacts"
    Effect   = "Allow"
    Action   = ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"]
    Resource = ["${module.artifacts.bucket_arn}/${var.artifacts_prefix}/*"]
  }])
  artifacts_kms_statements = var.create_kms_key ? [{
    Sid       = "UseArtifactsKeyThroughS3"
    Effect    = "Allow"
    Action    = ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey"]
    Resource  = [local.artifacts_kms_key_arn]
    Condition = { StringEquals = { "kms:ViaService" = "s3.${var.aws_region}.amazonaws.com" } }
  }] : []
  # secret_statements (what the MLflow hosts may read in Secrets Manager): database_roles.tf.

  # Key policies: the account root administers each key (AWS's default statement: it keeps the key
  # manageable and lets IAM policies in the account grant use, which is how the deployer gives RDS,
  # Secrets Manager and EC2 their grants); the hosts' roles get only the cryptographic actions they
  # need, through the one service that needs them.
  key_admin_statement = {
    Sid       = "AccountRootAdministers"
    Effect    = "Allow"
    Principal = { AWS = local.account_root }
    Action    = "kms:*"
    Resource  = "*"
  }

  # Log bucket grants: S3 server access logs of the artifact bucket, VPC flow logs.
  log_delivery_statements = [
    {
      Sid       = "S3ServerAccessLogs"
      Effect    = "Allow"
      Principal = { Service = "logging.s3.amazonaws.com" }
      Action    = "s3:PutObject"
      Resource  = "${local.arn_prefix}:s3:::${local.log_bucket}/s3-access/${local.bucket_name}/*"
      Condition = {
        ArnLike      = { "aws:SourceArn" = module.artifacts.bucket_arn }
        StringEquals = { "aws:SourceAccount" = local.account_id }
      }
    },
    {
      Sid       = "FlowLogsWrite"
      Effect    = "Allow"
      Principal = { Service = "delivery.logs.amazonaws.com" }
      Action    = "s3:PutObject"
      Resource  = "${local.arn_prefix}:s3:::${local.log_bucket}/AWSLogs/${local.account_id}/*"
      Condition = {
        StringEquals = { "aws:SourceAccount" = local.account_id, "s3:x-amz-acl" = "bucket-owner-full-control" }
        ArnLike      = { "aws:SourceArn" = "${local.arn_prefix}:logs:${var.aws_region}:${local.account_id}:*" }
      }
    },
    {
      Sid       = "FlowLogsAclCheck"
      Effect    = "Allow"
      Principal = { Service = "delivery.logs.amazonaws.com" }
      Action    = ["s3:GetBucketAcl", "s3:ListBucket"]
      Resource  = "${local.arn_prefix}:s3:::${local.log_bucket}"
      Condition = {
        StringEquals = { "aws:SourceAccount" = local.account_id }
        ArnLike      = { "aws:SourceArn" = "${local.arn_prefix}:logs:${var.aws_region}:${local.account_id}:*" }
      }
    },
  ]
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

# --- KMS: one key per data class, explicit key policies ---------------------

# The single key of earlier versions becomes the data key: RDS storage and the secret keep it.
moved {
  from = aws_kms_key.this
  to   = aws_kms_key.data
}

resource "aws_kms_key" "artifacts" {
  count = var.create_kms_key ? 1 : 0

  description             = "${local.name}: MLflow artifacts (S3 SSE-KMS)"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      local.key_admin_statement,
      {
        Sid       = "HostsUseThroughS3"
        Effect    = "Allow"
        Principal = { AWS = local.artifact_role_arns }
        Action    = ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey"]
        Resource  = "*"
        Condition = { StringEquals = { "kms:ViaService" = "s3.${var.aws_region}.amazonaws.com" } }
      },
    ]
  })
}

resource "aws_kms_alias" "artifacts" {
  count = var.create_kms_key ? 1 : 0

  name          = "alias/${local.name}-artifacts"
  target_key_id = aws_kms_key.artifacts[0].key_id
}

resource "aws_kms_key" "data" {
  count = var.create_kms_key ? 1 : 0

  description             = "${local.name}: RDS storage, Performance Insights, master-user secret, host root volumes"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = concat([
      local.key_admin_statement,
      {
        Sid       = "MlflowDecryptsDatabaseSecret"
        Effect    = "Allow"
        Principal = { AWS = module.mlflow.role_arn }
        Action    = "kms:Decrypt"
        Resource  = "*"
        Condition = { StringEquals = { "kms:ViaService" = "secretsmanager.${var.aws_region}.amazonaws.com" } }
      },
    ], local.autoscaling_kms_statements)
  })
}

resource "aws_kms_alias" "data" {
  count = var.create_kms_key ? 1 : 0

  name          = "alias/${local.name}-data"
  target_key_id = aws_kms_key.data[0].key_id
}

# --- Logs: S3 server access logs and VPC flow logs ---------------------------

module "logs" {
  source = "../../modules/s3_bucket"
  count  = var.create_log_bucket ? 1 : 0

  bucket_name = local.log_bucket
  # SSE-S3: S3 access log and flow log delivery then need no grant on a CMK (logs hold request
  # metadata, no artifact content).
  sse_algorithm                      = "AES256"
  expiration_days                    = var.log_retention_days
  noncurrent_version_expiration_days = 30
  policy_statements                  = concat(local.log_delivery_statements, local.alb_log_statements)
  force_destroy                      = var.force_destroy_buckets
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

  enable_flow_logs         = var.enable_flow_logs
  flow_log_destination_arn = var.enable_flow_logs ? module.logs[0].bucket_arn : null

  # The scaled layout's hosts live in the private subnets: they need a route out (topology.tf).
  private_egress = local.scaled ? var.private_egress : "none"
}

module "security_groups" {
  source = "../../modules/security_groups"

  name                         = local.name
  vpc_id                       = module.network.vpc_id
  allowed_cidrs                = var.allowed_cidrs
  admin_cidrs                  = var.admin_cidrs
  admin_cidr_min_prefix_length = var.admin_cidr_min_prefix_length
  enable_load_balancer         = local.scaled
  allow_nat_to_alb             = local.scaled && var.private_egress == "nat_gateway"
  nat_public_ips               = module.network.nat_public_ips
}

module "artifacts" {
  source = "../../modules/s3_bucket"

  bucket_name                        = local.bucket_name
  sse_algorithm                      = var.artifacts_sse_algorithm
  kms_key_arn                        = local.artifacts_kms_key_arn
  noncurrent_version_expiration_days = var.artifacts_noncurrent_days
  enable_access_logging              = var.create_log_bucket
  access_log_bucket                  = var.create_log_bucket ? module.logs[0].bucket_id : null
  force_destroy                      = var.force_destroy_buckets
}

module "database" {
  source = "../../modules/database"

  identifier            = local.name
  subnet_ids            = module.network.private_subnet_ids
  security_group_ids    = [module.security_groups.db_security_group_id]
  instance_class        = var.db_instance_class
  engine_version        = var.db_engine_version
  allocated_storage     = var.db_allocated_storage
  kms_key_arn           = local.data_kms_key_arn
  backup_retention_days = var.db_backup_retention_days
  multi_az              = var.db_multi_az
  enable_monitoring     = var.enable_db_monitoring
  parameters            = var.db_parameters
  deletion_protection   = var.db_deletion_protection
  skip_final_snapshot   = var.db_skip_final_snapshot
}

module "mlflow" {
  source = "../../modules/xeon_hosts"

  name               = "${local.name}-mlflow"
  group              = "mlflow"
  instance_count     = 1
  instance_type      = var.mlflow_instance_type
  ami_id             = local.ami_id
  subnet_ids         = local.scaled ? module.network.private_subnet_ids : module.network.public_subnet_ids
  security_group_ids = [module.security_groups.mlflow_security_group_id]
  # scaled: an autoscaling group from a launch template, private, behind the ALB (topology.tf).
  create_eip                 = !local.scaled
  create_autoscaling_group   = local.scaled
  host_tags                  = local.host_tags
  asg_min_size               = var.mlflow_min_size
  asg_max_size               = var.mlflow_max_size
  asg_desired_capacity       = var.mlflow_desired_capacity
  asg_health_check_type      = var.asg_health_check_type
  target_group_arns          = aws_lb_target_group.mlflow[*].arn
  key_name                   = var.key_name
  root_volume_size           = var.root_volume_size
  root_volume_kms_key_arn    = local.data_kms_key_arn
  enable_ssm                 = var.enable_ssm
  ssm_parameter_path         = "/${var.project}/${var.environment}"
  enable_detailed_monitoring = var.enable_detailed_monitoring
  policy_json = jsonencode({
    Version   = "2012-10-17"
    Statement = concat(local.mlflow_s3_statements, local.artifacts_kms_statements, local.secret_statements)
  })
}

module "trainers" {
  source = "../../modules/xeon_hosts"
  count  = var.trainer_count > 0 ? 1 : 0

  name                       = "${local.name}-trainer"
  group                      = "trainers"
  instance_count             = var.trainer_count
  instance_type              = var.trainer_instance_type
  ami_id                     = local.ami_id
  subnet_ids                 = local.scaled ? module.network.private_subnet_ids : module.network.public_subnet_ids
  create_eip                 = !local.scaled
  security_group_ids         = [module.security_groups.trainer_security_group_id]
  key_name                   = var.key_name
  root_volume_size           = var.root_volume_size
  root_volume_kms_key_arn    = local.data_kms_key_arn
  enable_ssm                 = var.enable_ssm
  ssm_parameter_path         = "/${var.project}/${var.environment}"
  enable_detailed_monitoring = var.enable_detailed_monitoring
  policy_json = jsonencode({
    Version   = "2012-10-17"
    Statement = concat(local.trainer_s3_statements, local.artifacts_kms_statements)
  })
}

# single: the MLflow host's Elastic IP; scaled: an alias to the load balancer.
resource "aws_route53_record" "mlflow" {
  count = var.route53_zone_id != null && var.dns_name != null ? 1 : 0

  zone_id = var.route53_zone_id
  name    = var.dns_name
  type    = "A"
  ttl     = local.scaled ? null : 300
  records = local.scaled ? null : module.mlflow.public_ips

  dynamic "alias" {
    for_each = local.scaled ? [1] : []
    content {
      name                   = aws_lb.this[0].dns_name
      zone_id                = aws_lb.this[0].zone_id
      evaluate_target_health = true
    }
  }
}
