variable "name" {
  description = "Name prefix for every resource of the network."
  type        = string
}

variable "create_vpc" {
  description = "Create a VPC with public and private subnets; false uses vpc_id and the subnet ids given."
  type        = bool
  default     = true
}

variable "vpc_cidr" {
  description = "CIDR block of the VPC created when create_vpc is true."
  type        = string
  default     = "10.40.0.0/16"

  validation {
    condition     = !strcontains(var.vpc_cidr, ":")
    error_message = "vpc_cidr takes an IPv4 CIDR block; IPv6 (${var.vpc_cidr}) is not supported by this module."
  }

  validation {
    condition     = can(regex("^((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])/(3[0-2]|[12]?[0-9])$", var.vpc_cidr)) && try(cidrhost(var.vpc_cidr, 0) == split("/", var.vpc_cidr)[0], false)
    error_message = "vpc_cidr must be a canonical IPv4 CIDR block (no leading zeros, no host bits set), e.g. 10.40.0.0/16."
  }

  validation {
    condition     = try(tonumber(split("/", var.vpc_cidr)[1]) >= 16 && tonumber(split("/", var.vpc_cidr)[1]) <= 24, false)
    error_message = "vpc_cidr must be between /16 (the largest VPC AWS allows) and /24, e.g. 10.40.0.0/16."
  }
}

variable "azs" {
  description = "Two availability zones for the subnets; empty takes the first two available in the region."
  type        = list(string)
  default     = []

  validation {
    condition     = length(var.azs) == 0 || length(var.azs) == 2
    error_message = "azs must be empty or list exactly two availability zones."
  }
}

variable "vpc_id" {
  description = "Existing VPC id, used when create_vpc is false."
  type        = string
  default     = null

  validation {
    condition     = var.vpc_id == null || can(regex("^vpc-[0-9a-f]+$", var.vpc_id))
    error_message = "vpc_id must look like vpc-0123456789abcdef0."
  }
}

variable "public_subnet_ids" {
  description = "Existing public subnets (two AZs) for the hosts, used when create_vpc is false."
  type        = list(string)
  default     = []
}

variable "private_subnet_ids" {
  description = "Existing private subnets (two AZs) for RDS, used when create_vpc is false."
  type        = list(string)
  default     = []
}

variable "enable_flow_logs" {
  description = "Record VPC flow logs of the VPC (created or given) into flow_log_destination_arn."
  type        = bool
  default     = false

  validation {
    condition     = !var.enable_flow_logs || var.flow_log_destination_arn != null
    error_message = "enable_flow_logs needs flow_log_destination_arn (an S3 bucket ARN)."
  }
}

variable "flow_log_destination_arn" {
  description = "ARN of the S3 bucket that receives the flow logs (under AWSLogs/<account>/vpcflowlogs/); its policy must let delivery.logs.amazonaws.com write there."
  type        = string
  default     = null

  validation {
    condition     = var.flow_log_destination_arn == null || can(regex("^arn:aws[a-z-]*:s3:::[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.flow_log_destination_arn))
    error_message = "flow_log_destination_arn must be an S3 bucket ARN (arn:aws:s3:::bucket), without a key prefix."
  }
}

variable "flow_log_traffic_type" {
  description = "Traffic recorded by the flow logs: ALL, ACCEPT or REJECT."
  type        = string
  default     = "ALL"

  validation {
    condition     = contains(["ALL", "ACCEPT", "REJECT"], var.flow_log_traffic_type)
    error_message = "flow_log_traffic_type must be ALL, ACCEPT or REJECT."
  }
}

variable "tags" {
  description = "Tags added to every resource of this module."
  type        = map(string)
  default     = {}
}

variable "private_egress" {
  description = "Route out of the private subnets of the created VPC: none (they hold only the database), nat_gateway (one NAT gateway: packages and AWS APIs) or vpc_endpoints (no internet: interface endpoints for vpc_endpoint_services). Both of the latter add the S3 gateway endpoint."
  type        = string
  default     = "none"

  validation {
    condition     = contains(["none", "nat_gateway", "vpc_endpoints"], var.private_egress)
    error_message = "private_egress must be none, nat_gateway or vpc_endpoints."
  }
}

variable "vpc_endpoint_services" {
  description = "AWS services given an interface endpoint when private_egress is vpc_endpoints (S3 always gets a gateway endpoint)."
  type        = list(string)
  default     = ["secretsmanager", "kms", "ssm", "ssmmessages", "ec2messages", "sts", "logs"]

  validation {
    condition     = alltrue([for s in var.vpc_endpoint_services : can(regex("^[a-z0-9.-]+$", s)) && s != "s3"])
    error_message = "vpc_endpoint_services holds service names such as secretsmanager or kms (s3 has its gateway endpoint already)."
  }
}
