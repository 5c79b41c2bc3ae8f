variable "bucket_name" {
  description = "Globally unique bucket name; S3's naming rules are enforced here, not left to the API."
  type        = string

  # S3 general purpose bucket naming rules, one validation each so the message says which one.
  validation {
    condition     = length(var.bucket_name) >= 3 && length(var.bucket_name) <= 63
    error_message = "bucket_name must be 3-63 characters long (got ${length(var.bucket_name)})."
  }

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]*[a-z0-9]$", var.bucket_name))
    error_message = "bucket_name may hold only lowercase letters, digits, dots and hyphens, and must start and end with a letter or digit."
  }

  validation {
    condition     = !strcontains(var.bucket_name, "..") && !strcontains(var.bucket_name, ".-") && !strcontains(var.bucket_name, "-.")
    error_message = "bucket_name must not contain \"..\", \".-\" or \"-.\" (every dot-separated label starts and ends with a letter or digit)."
  }

  validation {
    condition     = !can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+\\.[0-9]+$", var.bucket_name))
    error_message = "bucket_name must not be formatted as an IP address (e.g. 192.168.5.4)."
  }

  validation {
    condition     = !startswith(var.bucket_name, "xn--") && !startswith(var.bucket_name, "sthree-") && !startswith(var.bucket_name, "amzn-s3-demo-")
    error_message = "bucket_name must not start with a prefix S3 reserves: xn--, sthree-, amzn-s3-demo-."
  }

  validation {
    condition = alltrue([
      for suffix in ["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"] : !endswith(var.bucket_name, suffix)
    ])
    error_message = "bucket_name must not end with a suffix S3 reserves: -s3alias, --ol-s3, .mrap, --x-s3, --table-s3."
  }
}

variable "sse_algorithm" {
  description = "Default encryption: aws:kms (SSE-KMS with kms_key_arn) or AES256 (SSE-S3, used for the log bucket so log delivery needs no KMS grant)."
  type        = string
  default     = "aws:kms"

  validation {
    condition     = contains(["aws:kms", "AES256"], var.sse_algorithm)
    error_message = "sse_algorithm must be aws:kms or AES256."
  }
}

variable "kms_key_arn" {
  description = "Customer-managed KMS key for SSE-KMS; null uses the AWS-managed aws/s3 key."
  type        = string
  default     = null
}

variable "noncurrent_version_expiration_days" {
  description = "Days after which noncurrent object versions are deleted."
  type        = number
  default     = 90

  validation {
    condition     = var.noncurrent_version_expiration_days >= 1
    error_message = "noncurrent_version_expiration_days must be at least 1."
  }
}

variable "expiration_days" {
  description = "Days after which current objects expire (log retention); null keeps them (artifacts)."
  type        = number
  default     = null

  validation {
    condition     = var.expiration_days == null || try(var.expiration_days >= 1 && floor(var.expiration_days) == var.expiration_days, false)
    error_message = "expiration_days must be null or a whole number of days, at least 1."
  }
}

variable "enable_access_logging" {
  description = "Send S3 server access logs to access_log_bucket (a switch of its own: the bucket name may be known only after apply)."
  type        = bool
  default     = false

  validation {
    condition     = !var.enable_access_logging || var.access_log_bucket != null
    error_message = "enable_access_logging needs access_log_bucket."
  }
}

variable "access_log_bucket" {
  description = "Bucket that receives this bucket's S3 server access logs under s3-access/<bucket_name>/ (its policy must let logging.s3.amazonaws.com write there)."
  type        = string
  default     = null
}

variable "policy_statements" {
  description = "Extra IAM statements (objects as in a policy document) appended to the TLS-only bucket policy, e.g. log delivery grants."
  type        = any
  default     = []
}

variable "force_destroy" {
  description = "Allow destroying the bucket with objects in it (tests only; keep false in prod)."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags added to the bucket."
  type        = map(string)
  default     = {}
}
