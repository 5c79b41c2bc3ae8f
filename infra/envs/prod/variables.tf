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
    condition     = !strcontains(var.vpc_cidr, ":")
    error_message = "vpc_cidr takes an IPv4 CIDR block; IPv6 (${var.vpc_cidr}) is not supported here."
  }

  validation {
    condition     = can(regex(local.ipv4_cidr_regex, var.vpc_cidr)) && try(cidrhost(var.vpc_cidr, 0) == split("/", var.vpc_cidr)[0], false)
    error_message = "vpc_cidr must be a canonical IPv4 CIDR block (no leading zeros, no host bits set) such as 10.40.0.0/16."
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
  description = "IPv4 CIDR blocks (canonical) allowed to reach MLflow (nginx) on HTTPS/HTTP. Required: there is no open default; a block wider than /8 (0.0.0.0/0) is accepted with a warning in the plan."
  type        = list(string)

  validation {
    condition     = length(var.allowed_cidrs) > 0
    error_message = "allowed_cidrs must hold at least one IPv4 CIDR block such as 203.0.113.0/24."
  }

  validation {
    condition     = alltrue([for c in var.allowed_cidrs : !strcontains(c, ":")])
    error_message = "allowed_cidrs takes IPv4 CIDR blocks only; IPv6 is not supported by these rules: ${join(", ", [for c in var.allowed_cidrs : c if strcontains(c, ":")])}."
  }

  validation {
    condition     = alltrue([for c in var.allowed_cidrs : can(regex(local.ipv4_cidr_regex, c)) && try(cidrhost(c, 0) == split("/", c)[0], false)])
    error_message = "allowed_cidrs must hold canonical IPv4 CIDR blocks (address/prefix, no leading zeros, no host bits set, e.g. 203.0.113.0/24): ${join(", ", [for c in var.allowed_cidrs : c if !(can(regex(local.ipv4_cidr_regex, c)) && try(cidrhost(c, 0) == split("/", c)[0], false))])}."
  }
}

variable "admin_cidrs" {
  description = "IPv4 CIDR blocks (canonical, none wider than admin_cidr_min_prefix_length) allowed to SSH; empty (default) opens no SSH port, use SSM Session Manager."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.admin_cidrs : !strcontains(c, ":")])
    error_message = "admin_cidrs takes IPv4 CIDR blocks only; IPv6 is not supported by these rules: ${join(", ", [for c in var.admin_cidrs : c if strcontains(c, ":")])}."
  }

  validation {
    condition     = alltrue([for c in var.admin_cidrs : can(regex(local.ipv4_cidr_regex, c)) && try(cidrhost(c, 0) == split("/", c)[0], false)])
    error_message = "admin_cidrs must hold canonical IPv4 CIDR blocks (address/prefix, no leading zeros, no host bits set, e.g. 198.51.100.7/32): ${join(", ", [for c in var.admin_cidrs : c if !(can(regex(local.ipv4_cidr_regex, c)) && try(cidrhost(c, 0) == split("/", c)[0], false))])}."
  }

  validation {
    condition     = alltrue([for c in var.admin_cidrs : try(tonumber(split("/", c)[1]) >= max(var.admin_cidr_min_prefix_length, 16), false)])
    error_message = "admin_cidrs may not open SSH to a block wider than /${var.admin_cidr_min_prefix_length} (admin_cidr_min_prefix_length): ${join(", ", [for c in var.admin_cidrs : c if !try(tonumber(split("/", c)[1]) >= max(var.admin_cidr_min_prefix_length, 16), false)])}."
  }
}

variable "admin_cidr_min_prefix_length" {
  description = "Shortest prefix admin_cidrs may use: 24 (256 addresses, an office or VPN egress range) by default; it can be relaxed to 16 at most, never further."
  type        = number
  default     = 24

  validation {
    condition     = var.admin_cidr_min_prefix_length >= 16 && var.admin_cidr_min_prefix_length <= 32 && floor(var.admin_cidr_min_prefix_length) == var.admin_cidr_min_prefix_length
    error_message = "admin_cidr_min_prefix_length must be a whole number from 16 to 32."
  }
}

variable "enable_flow_logs" {
  description = "VPC flow logs (all traffic) into the log bucket; needs create_log_bucket."
  type        = bool
  default     = true

  validation {
    condition     = !var.enable_flow_logs || var.create_log_bucket
    error_message = "enable_flow_logs needs create_log_bucket = true (the flow logs go to the log bucket)."
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
  description = "Scoped inline SSM policy on the host roles (Session Manager instead of SSH; parameters under /<project>/<environment>/ only)."
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
  description = "PostgreSQL parameters of the RDS parameter group; rds.force_ssl = 1 is always added last (TLS only)."
  type        = map(string)
  default = {
    "log_min_duration_statement" = "1000"
  }

  validation {
    condition     = lookup(var.db_parameters, "rds.force_ssl", "1") == "1"
    error_message = "db_parameters may not turn off rds.force_ssl: connections to the database are TLS only."
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
  description = "Name of the MLflow artifact bucket (S3 naming rules, checked by the s3_bucket module); null derives <project>-<environment>-mlflow-artifacts-<region>."
  type        = string
  default     = null

  validation {
    condition     = var.artifacts_bucket_name == null || try(trimspace(var.artifacts_bucket_name) != "", false)
    error_message = "artifacts_bucket_name must not be empty: give a bucket name, or leave it null to derive one."
  }
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
  description = "Create two customer-managed KMS keys with explicit key policies: artifacts (S3 SSE-KMS) and data (RDS storage, Performance Insights, the master-user secret, host root volumes); false uses AWS-managed keys."
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

variable "force_destroy_buckets" {
  description = "Allow destroying the artifact and log buckets while they hold objects (tests only)."
  type        = bool
  default     = false
}

# --- Logs --------------------------------------------------------------------

variable "create_log_bucket" {
  description = "Create a log bucket (SSE-S3, private, TLS only) for the artifact bucket's S3 server access logs and the VPC flow logs."
  type        = bool
  default     = true
}

variable "log_bucket_name" {
  description = "Name of the log bucket (S3 naming rules, checked by the s3_bucket module); null derives <project>-<environment>-logs-<region>."
  type        = string
  default     = null

  validation {
    condition     = var.log_bucket_name == null || try(trimspace(var.log_bucket_name) != "", false)
    error_message = "log_bucket_name must not be empty: give a bucket name, or leave it null to derive one."
  }
}

variable "log_retention_days" {
  description = "Days the log bucket keeps access and flow logs."
  type        = number
  default     = 365

  validation {
    condition     = var.log_retention_days >= 1 && floor(var.log_retention_days) == var.log_retention_days
    error_message = "log_retention_days must be a whole number of days, at least 1."
  }
}

# --- Topology (topology.tf) --------------------------------------------------------

variable "topology" {
  description = "single: one MLflow host and the trainers in the public subnets with Elastic IPs (the small default). scaled: every host in the private subnets behind an Application Load Balancer (TLS, ACM), MLflow and serving hosts in autoscaling groups, trainers with a private rendezvous name."
  type        = string
  default     = "single"

  validation {
    condition     = contains(["single", "scaled"], var.topology)
    error_message = "topology must be single or scaled."
  }

  validation {
    condition     = var.topology == "single" || length(var.azs) == 0 || length(distinct(var.azs)) == 2
    error_message = "topology = scaled needs two distinct availability zones (the load balancer spans two): set azs to two zones or leave it empty."
  }

  validation {
    condition     = var.topology == "single" || var.create_vpc || (length(distinct(var.public_subnet_ids)) >= 2 && length(distinct(var.private_subnet_ids)) >= 2)
    error_message = "topology = scaled with create_vpc = false needs public_subnet_ids and private_subnet_ids in two availability zones each (the private ones must already route out)."
  }

  validation {
    condition     = var.topology == "single" || var.certificate_arn != null || (var.dns_name != null && var.route53_zone_id != null)
    error_message = "topology = scaled terminates TLS on the load balancer: give certificate_arn, or dns_name and route53_zone_id to create and validate an ACM certificate."
  }

  validation {
    condition     = var.topology == "single" || length(var.admin_cidrs) == 0
    error_message = "topology = scaled puts every host in private subnets without a public address: admin_cidrs (SSH) cannot reach them; use SSM Session Manager and leave admin_cidrs empty."
  }
}

variable "private_egress" {
  description = "scaled: how the private subnets reach out. nat_gateway (packages and AWS APIs through one NAT gateway; the default, since provisioning installs packages) or vpc_endpoints (no internet: interface endpoints for Secrets Manager, KMS, SSM, STS, CloudWatch Logs and an S3 gateway endpoint; the hosts then need a pre-built AMI or a package mirror)."
  type        = string
  default     = "nat_gateway"

  validation {
    condition     = contains(["nat_gateway", "vpc_endpoints"], var.private_egress)
    error_message = "private_egress must be nat_gateway or vpc_endpoints."
  }
}

variable "certificate_arn" {
  description = "scaled: ACM certificate of the load balancer's HTTPS listener; null creates one for dns_name, validated by DNS in route53_zone_id."
  type        = string
  default     = null

  validation {
    condition     = var.certificate_arn == null || can(regex("^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/[0-9a-f-]+$", coalesce(var.certificate_arn, "-")))
    error_message = "certificate_arn must be an ACM certificate ARN (arn:aws:acm:REGION:ACCOUNT:certificate/ID)."
  }
}

variable "alb_ssl_policy" {
  description = "scaled: TLS policy of the HTTPS listener; TLS 1.2 and 1.3 only."
  type        = string
  default     = "ELBSecurityPolicy-TLS13-1-2-2021-06"

  validation {
    condition     = can(regex("^ELBSecurityPolicy-(TLS13-1-[23]-|FS-1-2-|TLS-1-2-)", var.alb_ssl_policy))
    error_message = "alb_ssl_policy must allow TLS 1.2 at the lowest: an ELBSecurityPolicy-TLS13-1-2-*, -TLS13-1-3-*, -FS-1-2-* or -TLS-1-2-* policy."
  }
}

variable "alb_deletion_protection" {
  description = "scaled: deletion protection of the load balancer (keep true in prod)."
  type        = bool
  default     = true
}

variable "alb_idle_timeout" {
  description = "scaled: seconds the load balancer keeps an idle connection (large artifact uploads need more than the 60 s default)."
  type        = number
  default     = 300

  validation {
    condition     = var.alb_idle_timeout >= 1 && var.alb_idle_timeout <= 4000
    error_message = "alb_idle_timeout must be between 1 and 4000 seconds."
  }
}

variable "alb_web_acl_arn" {
  description = "scaled: WAFv2 web ACL to attach to the load balancer; null attaches none."
  type        = string
  default     = null
}

variable "mlflow_min_size" {
  description = "scaled: fewest MLflow hosts in the autoscaling group."
  type        = number
  default     = 2

  validation {
    condition     = var.mlflow_min_size >= 1 && var.mlflow_min_size <= 16 && floor(var.mlflow_min_size) == var.mlflow_min_size
    error_message = "mlflow_min_size must be a whole number from 1 to 16."
  }
}

variable "mlflow_max_size" {
  description = "scaled: most MLflow hosts in the autoscaling group."
  type        = number
  default     = 4

  validation {
    condition     = var.mlflow_max_size >= var.mlflow_min_size && var.mlflow_max_size <= 16 && floor(var.mlflow_max_size) == var.mlflow_max_size
    error_message = "mlflow_max_size must be a whole number, at least mlflow_min_size (${var.mlflow_min_size}) and at most 16."
  }
}

variable "mlflow_desired_capacity" {
  description = "scaled: MLflow hosts the autoscaling group runs (between mlflow_min_size and mlflow_max_size)."
  type        = number
  default     = 2

  validation {
    condition     = var.mlflow_desired_capacity >= var.mlflow_min_size && var.mlflow_desired_capacity <= var.mlflow_max_size && floor(var.mlflow_desired_capacity) == var.mlflow_desired_capacity
    error_message = "mlflow_desired_capacity must be a whole number between mlflow_min_size (${var.mlflow_min_size}) and mlflow_max_size (${var.mlflow_max_size})."
  }
}

variable "serving_instance_type" {
  description = "scaled: instance type of the serving hosts; Intel Xeon families only."
  type        = string
  default     = "c7i.xlarge"

  validation {
    condition     = can(regex("^(m7i|m7i-flex|m6i|m6in|c7i|c7i-flex|c6i|c6in|r7i|r6i|r6in|i4i)\\.[a-z0-9]+$", var.serving_instance_type))
    error_message = "serving_instance_type must be an Intel Xeon family such as c7i, m7i, m6i or r7i."
  }
}

variable "serving_min_size" {
  description = "scaled: fewest serving hosts in the autoscaling group (0 lets the group be empty)."
  type        = number
  default     = 1

  validation {
    condition     = var.serving_min_size >= 0 && var.serving_min_size <= 16 && floor(var.serving_min_size) == var.serving_min_size
    error_message = "serving_min_size must be a whole number from 0 to 16."
  }
}

variable "serving_max_size" {
  description = "scaled: most serving hosts in the autoscaling group."
  type        = number
  default     = 4

  validation {
    condition     = var.serving_max_size >= max(var.serving_min_size, 1) && var.serving_max_size <= 16 && floor(var.serving_max_size) == var.serving_max_size
    error_message = "serving_max_size must be a whole number, at least serving_min_size (${var.serving_min_size}) and 1, and at most 16."
  }
}

variable "serving_desired_capacity" {
  description = "scaled: serving hosts the autoscaling group runs (between serving_min_size and serving_max_size)."
  type        = number
  default     = 2

  validation {
    condition     = var.serving_desired_capacity >= var.serving_min_size && var.serving_desired_capacity <= var.serving_max_size && floor(var.serving_desired_capacity) == var.serving_desired_capacity
    error_message = "serving_desired_capacity must be a whole number between serving_min_size (${var.serving_min_size}) and serving_max_size (${var.serving_max_size})."
  }
}

variable "serving_health_check_path" {
  description = "scaled: path of the load balancer's health check on the serving hosts' nginx (nginx/serving-host.conf.template): /health is the serving app's own, without a login; /serve/* needs a login that may predict, which the health check has not."
  type        = string
  default     = "/health"

  validation {
    condition     = can(regex("^/[A-Za-z0-9/_.-]*$", var.serving_health_check_path))
    error_message = "serving_health_check_path must be an absolute path such as /health."
  }
}

variable "asg_health_check_type" {
  description = "scaled: EC2 (replace hosts whose instance fails) or ELB (also those failing the load balancer's health check). ELB only once hosts provision themselves at boot (baked AMI or user data): a host Ansible has not configured yet fails the check and would be replaced in a loop."
  type        = string
  default     = "EC2"

  validation {
    condition     = contains(["EC2", "ELB"], var.asg_health_check_type)
    error_message = "asg_health_check_type must be EC2 or ELB."
  }
}

variable "private_zone_name" {
  description = "scaled: private Route 53 zone of the VPC holding the trainers' rendezvous name (trainer-rendezvous.<zone>); null uses <project>-<environment>.internal."
  type        = string
  default     = null

  validation {
    condition     = var.private_zone_name == null || can(regex("^([a-z0-9]([a-z0-9-]*[a-z0-9])?\\.)+[a-z0-9]([a-z0-9-]*[a-z0-9])?$", coalesce(var.private_zone_name, "-")))
    error_message = "private_zone_name must be a DNS name such as mlops.internal (lowercase, no trailing dot)."
  }
}
