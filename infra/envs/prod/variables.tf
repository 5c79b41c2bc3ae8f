variable "project" {
  description = "Project name: prefix of resource names and the Project tag."
  type        = string
  default     = "mlops-xeon"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,20}$", var.project))
    error_message = "project must be 2-21 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "environment" {
  description = "Environment name (Environment tag and name suffix)."
  type        = string
  default     = "prod"

  validation {
    condition     = contains(["prod", "staging", "dev", "test"], var.environment)
    error_message = "environment must be one of prod, staging, dev, test."
  }
}

variable "aws_region" {
  description = "AWS region to deploy into."
  type        = string
  default     = "eu-west-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.aws_region))
    error_message = "aws_region must look like eu-west-1."
  }
}

variable "tags" {
  description = "Extra tags merged into the provider default_tags (Project, Environment, ManagedBy)."
  type        = map(string)
  default     = {}
}

# --- Network -----------------------------------------------------------------

variable "create_vpc" {
  description = "Create a VPC with public and private subnets in two AZs; false uses vpc_id and the subnet ids."
  type        = bool
  default     = true
}

variable "vpc_cidr" {
  description = "CIDR block of the created VPC."
  type        = string
  default     = "10.40.0.0/16"

  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0))
    error_message = "vpc_cidr must be an IPv4 CIDR block such as 10.40.0.0/16."
  }
}

variable "azs" {
  description = "Two availability zones; empty takes the first two available."
  type        = list(string)
  default     = []
}

variable "vpc_id" {
  description = "Existing VPC id (create_vpc = false)."
  type        = string
  default     = null
}

variable "public_subnet_ids" {
  description = "Existing public subnets in two AZs for the hosts (create_vpc = false)."
  type        = list(string)
  default     = []
}

variable "private_subnet_ids" {
  description = "Existing private subnets in two AZs for RDS (create_vpc = false)."
  type        = list(string)
  default     = []
}

variable "allowed_cidrs" {
  description = "IPv4 CIDR blocks allowed to reach MLflow (nginx) on HTTPS/HTTP. Required: there is no open default."
  type        = list(string)

  validation {
    condition     = length(var.allowed_cidrs) > 0 && alltrue([for c in var.allowed_cidrs : can(cidrhost(c, 0))])
    error_message = "allowed_cidrs must hold at least one IPv4 CIDR block such as 203.0.113.0/24."
  }
}

variable "admin_cidrs" {
  description = "IPv4 CIDR blocks allowed to SSH; empty (default) opens no SSH port, use SSM Session Manager."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.admin_cidrs : can(cidrhost(c, 0)) && c != "0.0.0.0/0"])
    error_message = "admin_cidrs must hold IPv4 CIDR blocks and never 0.0.0.0/0."
  }
}

# --- Hosts -------------------------------------------------------------------

variable "ami_id" {
  description = "AMI override for all hosts; null looks up the latest Debian 12 amd64 AMI (owner 136693071363)."
  type        = string
  default     = null

  validation {
    condition     = var.ami_id == null || can(regex("^ami-[0-9a-f]+$", var.ami_id))
    error_message = "ami_id must look like ami-0123456789abcdef0."
  }
}

variable "mlflow_instance_type" {
  description = "Instance type of the MLflow host; Intel Xeon families only (m7i, m6i, c7i, r7i, ...)."
  type        = string
  default     = "m7i.large"

  validation {
    condition     = can(regex("^(m7i|m7i-flex|m6i|m6in|c7i|c7i-flex|c6i|c6in|r7i|r6i|r6in|i4i)\\.[a-z0-9]+$", var.mlflow_instance_type))
    error_message = "mlflow_instance_type must be an Intel Xeon family such as m7i, m6i, c7i or r7i."
  }
}

variable "trainer_count" {
  description = "Number of trainer hosts (scheduled retraining, multi-host DDP); 0 creates none."
  type        = number
  default     = 0

  validation {
    condition     = var.trainer_count >= 0 && var.trainer_count <= 16 && floor(var.trainer_count) == var.trainer_count
    error_message = "trainer_count must be a whole number between 0 and 16."
  }
}

variable "trainer_instance_type" {
  description = "Instance type of the trainers; Intel Xeon families only (AMX on c7i/m7i/r7i)."
  type        = string
  default     = "c7i.4xlarge"

  validation {
    condition     = can(regex("^(m7i|m7i-flex|m6i|m6in|c7i|c7i-flex|c6i|c6in|r7i|r6i|r6in|i4i)\\.[a-z0-9]+$", var.trainer_instance_type))
    error_message = "trainer_instance_type must be an Intel Xeon family such as c7i, m7i, m6i or r7i."
  }
}

variable "key_name" {
  description = "EC2 key pair for SSH (with admin_cidrs); null relies on SSM Session Manager."
  type        = string
  default     = null
}

variable "root_volume_size" {
  description = "Root volume size in GiB for every host (gp3, encrypted)."
  type        = number
  default     = 40
}

variable "enable_detailed_monitoring" {
  description = "CloudWatch detailed (1-minute) monitoring of every host."
  type        = bool
  default     = true
}

variable "enable_ssm" {
  description = "Attach AmazonSSMManagedInstanceCore to the host roles (SSM Session Manager instead of SSH)."
  type        = bool
  default     = true
}

# --- DNS ---------------------------------------------------------------------

variable "route53_zone_id" {
  description = "Route 53 hosted zone for the MLflow host's DNS record; null creates no record."
  type        = string
  default     = null
}

variable "dns_name" {
  description = "Fully qualified name of the MLflow host (A record to its Elastic IP), e.g. mlflow.example.com."
  type        = string
  default     = null
}

# --- Database ----------------------------------------------------------------

variable "db_instance_class" {
  description = "RDS instance class; Intel Xeon classes only (db.m7i, db.m6i, db.r7i, db.r6i, db.t3)."
  type        = string
  default     = "db.m7i.large"
}

variable "db_engine_version" {
  description = "PostgreSQL version."
  type        = string
  default     = "16"
}

variable "db_allocated_storage" {
  description = "Initial RDS storage in GiB."
  type        = number
  default     = 50
}

variable "db_backup_retention_days" {
  description = "Days of automated RDS backups (1-35)."
  type        = number
  default     = 14

  validation {
    condition     = var.db_backup_retention_days >= 1 && var.db_backup_retention_days <= 35
    error_message = "db_backup_retention_days must be between 1 and 35."
  }
}

variable "db_multi_az" {
  description = "Multi-AZ standby for RDS."
  type        = bool
  default     = true
}

variable "enable_db_monitoring" {
  description = "RDS Enhanced Monitoring and Performance Insights."
  type        = bool
  default     = true
}

variable "db_parameters" {
  description = "PostgreSQL parameters of the RDS parameter group; keep rds.force_ssl = 1."
  type        = map(string)
  default = {
    "rds.force_ssl"              = "1"
    "log_min_duration_statement" = "1000"
  }
}

variable "db_deletion_protection" {
  description = "RDS deletion protection (keep true in prod)."
  type        = bool
  default     = true
}

variable "db_skip_final_snapshot" {
  description = "Skip the final snapshot when RDS is destroyed (keep false in prod)."
  type        = bool
  default     = false
}

# --- Artifacts ---------------------------------------------------------------

variable "artifacts_bucket_name" {
  description = "Name of the MLflow artifact bucket; null derives <project>-<environment>-mlflow-artifacts-<region>."
  type        = string
  default     = null
}

variable "artifacts_prefix" {
  description = "Key prefix of MLflow artifacts in the bucket (the hosts may only touch this prefix)."
  type        = string
  default     = "mlflow"

  validation {
    condition     = can(regex("^[a-zA-Z0-9][a-zA-Z0-9_.-]*$", var.artifacts_prefix))
    error_message = "artifacts_prefix must be a single path segment without slashes, e.g. mlflow."
  }
}

variable "create_kms_key" {
  description = "Create a customer-managed KMS key for S3 (SSE-KMS), RDS storage and the master-user secret."
  type        = bool
  default     = true
}

variable "artifacts_sse_algorithm" {
  description = "Default encryption of the artifact bucket: aws:kms (SSE-KMS) or AES256 (SSE-S3)."
  type        = string
  default     = "aws:kms"

  validation {
    condition     = contains(["aws:kms", "AES256"], var.artifacts_sse_algorithm)
    error_message = "artifacts_sse_algorithm must be aws:kms or AES256."
  }
}

variable "artifacts_noncurrent_days" {
  description = "Days after which noncurrent artifact versions are deleted."
  type        = number
  default     = 90
}

variable "artifacts_access_log_bucket" {
  description = "Existing bucket for S3 server access logs of the artifact bucket; null disables access logging."
  type        = string
  default     = null
}

variable "artifacts_force_destroy" {
  description = "Allow destroying the artifact bucket while it holds objects (tests only)."
  type        = bool
  default     = false
}
