variable "name" {
  description = "Name prefix of the hosts, their role and instance profile."
  type        = string
}

variable "instance_count" {
  description = "Number of identical hosts."
  type        = number
  default     = 1

  validation {
    condition     = var.instance_count >= 1 && var.instance_count <= 16
    error_message = "instance_count must be between 1 and 16."
  }
}

variable "instance_type" {
  description = "EC2 instance type; Intel Xeon families only (m7i, m6i, c7i, c6i, r7i, r6i, m7i-flex, c7i-flex, i4i)."
  type        = string
  default     = "m7i.large"

  validation {
    condition     = can(regex("^(m7i|m7i-flex|m6i|m6in|c7i|c7i-flex|c6i|c6in|r7i|r6i|r6in|i4i)\\.[a-z0-9]+$", var.instance_type))
    error_message = "instance_type must be an Intel Xeon family such as m7i, m6i, c7i or r7i (no AMD 'a' or Graviton 'g' types)."
  }
}

variable "ami_id" {
  description = "AMI of the hosts (Debian 12 expected; ansible_user admin)."
  type        = string

  validation {
    condition     = can(regex("^ami-[0-9a-f]+$", var.ami_id))
    error_message = "ami_id must look like ami-0123456789abcdef0."
  }
}

variable "subnet_ids" {
  description = "Subnets to spread the hosts over (round robin)."
  type        = list(string)
}

variable "security_group_ids" {
  description = "Security groups of the hosts."
  type        = list(string)
}

variable "key_name" {
  description = "EC2 key pair for SSH; null relies on SSM Session Manager."
  type        = string
  default     = null
}

variable "root_volume_size" {
  description = "Root volume size in GiB (gp3, encrypted)."
  type        = number
  default     = 40

  validation {
    condition     = var.root_volume_size >= 8 && var.root_volume_size <= 16384
    error_message = "root_volume_size must be between 8 and 16384 GiB."
  }
}

variable "root_volume_kms_key_arn" {
  description = "Customer-managed KMS key for the root volume; null uses the AWS-managed aws/ebs key."
  type        = string
  default     = null
}

variable "policy_json" {
  description = "Least-privilege inline policy (JSON) of the hosts' role."
  type        = string
}

variable "enable_ssm" {
  description = "Give the hosts' role a scoped inline SSM policy (Session Manager, Run Command, parameters under ssm_parameter_path); AmazonSSMManagedInstanceCore is never attached."
  type        = bool
  default     = true
}

variable "ssm_parameter_path" {
  description = "SSM Parameter Store path the hosts may read (ssm:GetParameter*), e.g. /mlops-xeon/prod; nothing outside it."
  type        = string

  validation {
    condition     = can(regex("^(/[a-zA-Z0-9_.-]+)+$", var.ssm_parameter_path))
    error_message = "ssm_parameter_path must be an absolute parameter path without a trailing slash or wildcards, e.g. /mlops-xeon/prod."
  }
}

variable "enable_detailed_monitoring" {
  description = "CloudWatch detailed (1-minute) monitoring of the hosts."
  type        = bool
  default     = true
}

variable "create_eip" {
  description = "Give every host an Elastic IP."
  type        = bool
  default     = true
}

variable "tags" {
  description = "Tags added to every resource of this module."
  type        = map(string)
  default     = {}
}
