variable "name" {
  description = "Name prefix of the hosts, their role and instance profile."
  type        = string
}

variable "instance_count" {
  description = "Number of identical fixed hosts (ignored with create_autoscaling_group)."
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
  description = "Least-privilege inline policy (JSON) of the hosts' role; null when the hosts need no AWS permission beyond the SSM policy."
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

variable "group" {
  description = "Value of the mlops_group tag on every host and volume (mlflow, serving, trainers): the dynamic inventory selects hosts by it; null sets no tag."
  type        = string
  default     = null

  validation {
    condition     = var.group == null || contains(["mlflow", "serving", "trainers"], coalesce(var.group, "-"))
    error_message = "group must be mlflow, serving, trainers or null."
  }
}

# --- Autoscaling group -------------------------------------------------------

variable "create_autoscaling_group" {
  description = "Run the hosts as an autoscaling group from a launch template (private, no public address, no Elastic IP) instead of instance_count fixed instances."
  type        = bool
  default     = false
}

variable "asg_min_size" {
  description = "Smallest size of the autoscaling group."
  type        = number
  default     = 1

  validation {
    condition     = var.asg_min_size >= 0 && var.asg_min_size <= 16 && floor(var.asg_min_size) == var.asg_min_size
    error_message = "asg_min_size must be a whole number from 0 to 16."
  }
}

variable "asg_max_size" {
  description = "Largest size of the autoscaling group (at least asg_min_size)."
  type        = number
  default     = 1

  validation {
    condition     = var.asg_max_size >= 1 && var.asg_max_size <= 16 && floor(var.asg_max_size) == var.asg_max_size && var.asg_max_size >= var.asg_min_size
    error_message = "asg_max_size must be a whole number from 1 to 16 and at least asg_min_size."
  }
}

variable "asg_desired_capacity" {
  description = "Desired size of the autoscaling group (between asg_min_size and asg_max_size)."
  type        = number
  default     = 1

  validation {
    condition     = var.asg_desired_capacity >= var.asg_min_size && var.asg_desired_capacity <= var.asg_max_size && floor(var.asg_desired_capacity) == var.asg_desired_capacity
    error_message = "asg_desired_capacity must be a whole number between asg_min_size and asg_max_size."
  }
}

variable "asg_health_check_type" {
  description = "EC2 (instance status) or ELB (the target group's health check also replaces hosts); ELB only once hosts provision themselves at boot (user_data_base64 or a baked AMI), or unprovisioned hosts are replaced in a loop."
  type        = string
  default     = "EC2"

  validation {
    condition     = contains(["EC2", "ELB"], var.asg_health_check_type)
    error_message = "asg_health_check_type must be EC2 or ELB."
  }
}

variable "asg_health_check_grace_period" {
  description = "Seconds after launch before the group acts on health checks."
  type        = number
  default     = 600
}

variable "target_group_arns" {
  description = "Load balancer target groups the autoscaling group registers its hosts in."
  type        = list(string)
  default     = []
}

variable "root_device_name" {
  description = "Root device name of the AMI (launch template block device); /dev/xvda on Debian 12."
  type        = string
  default     = "/dev/xvda"
}

variable "user_data_base64" {
  description = "Base64 user data of the launch template (e.g. a bootstrap that provisions the host); null sets none."
  type        = string
  default     = null
}

variable "host_tags" {
  description = "Tags on the hosts and volumes an autoscaling group launches (set through the launch template: the provider's default_tags do not reach them), e.g. Project and Environment for the dynamic inventory's filters."
  type        = map(string)
  default     = {}
}
