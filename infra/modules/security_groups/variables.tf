variable "name" {
  description = "Name prefix of the security groups."
  type        = string
}

variable "vpc_id" {
  description = "VPC the security groups belong to."
  type        = string
}

variable "allowed_cidrs" {
  description = "IPv4 CIDR blocks allowed to reach the MLflow host on HTTPS and HTTP (nginx). No default: say who may connect."
  type        = list(string)

  validation {
    condition     = alltrue([for c in var.allowed_cidrs : can(cidrhost(c, 0))])
    error_message = "allowed_cidrs must hold IPv4 CIDR blocks such as 203.0.113.0/24."
  }
}

variable "admin_cidrs" {
  description = "IPv4 CIDR blocks allowed to SSH to the hosts; empty (the default) opens no SSH, use SSM Session Manager."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.admin_cidrs : can(cidrhost(c, 0)) && c != "0.0.0.0/0"])
    error_message = "admin_cidrs must hold IPv4 CIDR blocks and never 0.0.0.0/0."
  }
}

variable "db_port" {
  description = "PostgreSQL port."
  type        = number
  default     = 5432
}

variable "tags" {
  description = "Tags added to every security group."
  type        = map(string)
  default     = {}
}
