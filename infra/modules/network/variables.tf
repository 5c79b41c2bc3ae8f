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
    condition     = can(cidrhost(var.vpc_cidr, 0)) && tonumber(split("/", var.vpc_cidr)[1]) <= 24
    error_message = "vpc_cidr must be an IPv4 CIDR block of /24 or larger, e.g. 10.40.0.0/16."
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

variable "tags" {
  description = "Tags added to every resource of this module."
  type        = map(string)
  default     = {}
}
