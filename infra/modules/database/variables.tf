variable "identifier" {
  description = "RDS instance identifier (also the prefix of its subnet and parameter groups)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,62}$", var.identifier))
    error_message = "identifier must start with a letter and hold only lowercase letters, digits and hyphens."
  }
}

variable "subnet_ids" {
  description = "Private subnets (two AZs) for the DB subnet group."
  type        = list(string)
}

variable "security_group_ids" {
  description = "Security groups of the instance."
  type        = list(string)
}

variable "engine_version" {
  description = "PostgreSQL major (or major.minor) version."
  type        = string
  default     = "16"
}

variable "parameter_group_family" {
  description = "Parameter group family matching engine_version."
  type        = string
  default     = "postgres16"
}

variable "instance_class" {
  description = "RDS instance class; Intel Xeon classes only (db.m6i, db.m7i, db.r6i, db.r7i, db.t3, db.m5, db.r5)."
  type        = string
  default     = "db.m7i.large"

  validation {
    condition     = can(regex("^db\\.(m5|m6i|m7i|r5|r6i|r7i|t3)\\.[a-z0-9]+$", var.instance_class))
    error_message = "instance_class must be an Intel Xeon RDS class such as db.m7i.large."
  }
}

variable "allocated_storage" {
  description = "Initial storage in GiB."
  type        = number
  default     = 50
}

variable "max_allocated_storage" {
  description = "Storage autoscaling ceiling in GiB (0 disables autoscaling)."
  type        = number
  default     = 200
}

variable "db_name" {
  description = "Database created for MLflow."
  type        = string
  default     = "mlflow"
}

variable "username" {
  description = "Master user name; its password is generated and kept by AWS Secrets Manager."
  type        = string
  default     = "mlflow"
}

variable "port" {
  description = "PostgreSQL port."
  type        = number
  default     = 5432
}

variable "kms_key_arn" {
  description = "Customer-managed KMS key for storage, Performance Insights and the master-user secret; null uses AWS-managed keys."
  type        = string
  default     = null
}

variable "backup_retention_days" {
  description = "Days of automated backups (1-35)."
  type        = number
  default     = 14

  validation {
    condition     = var.backup_retention_days >= 1 && var.backup_retention_days <= 35
    error_message = "backup_retention_days must be between 1 and 35."
  }
}

variable "multi_az" {
  description = "Run a standby in a second AZ."
  type        = bool
  default     = true
}

variable "deletion_protection" {
  description = "Refuse to delete the instance."
  type        = bool
  default     = true
}

variable "skip_final_snapshot" {
  description = "Skip the final snapshot on deletion (tests only; keep false in prod)."
  type        = bool
  default     = false
}

variable "enable_monitoring" {
  description = "Enhanced Monitoring (60 s) and Performance Insights."
  type        = bool
  default     = true
}

variable "parameters" {
  description = "PostgreSQL parameters of the instance's parameter group; rds.force_ssl = 1 (TLS only) is always merged in last, overriding any value given here."
  type        = map(string)
  default = {
    "log_min_duration_statement" = "1000"
  }
}

variable "tags" {
  description = "Tags added to every resource of this module."
  type        = map(string)
  default     = {}
}
