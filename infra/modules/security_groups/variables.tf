variable "name" {
  description = "Name prefix of the security groups."
  type        = string
}

variable "vpc_id" {
  description = "VPC the security groups belong to."
  type        = string
}

variable "allowed_cidrs" {
  description = "IPv4 CIDR blocks (canonical, e.g. 203.0.113.0/24) allowed to reach the MLflow host on HTTPS and HTTP (nginx). No default: say who may connect. A block wider than /8 (0.0.0.0/0) is allowed but warned about by check.public_web."
  type        = list(string)

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
  description = "IPv4 CIDR blocks (canonical) allowed to SSH to the hosts, none wider than admin_cidr_min_prefix_length; empty (the default) opens no SSH, use SSM Session Manager."
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

variable "db_port" {
  description = "PostgreSQL port."
  type        = number
  default     = 5432
}

variable "node_exporter_port" {
  description = "Port of the Prometheus node exporter on the trainers (Ansible's node_exporter_port: mlflow_port + 4100, 9100 by default), open to the MLflow group only."
  type        = number
  default     = 9100

  validation {
    condition     = var.node_exporter_port >= 1024 && var.node_exporter_port <= 65535 && floor(var.node_exporter_port) == var.node_exporter_port
    error_message = "node_exporter_port must be a whole number from 1024 to 65535 (an unprivileged port)."
  }
}

variable "alertmanager_cluster_port" {
  description = "Gossip port of the Alertmanager cluster on the MLflow hosts (Ansible's monitoring_alertmanager_cluster_port: mlflow_port + 4094, 9094 by default), TCP and UDP between MLflow hosts only; with enable_load_balancer."
  type        = number
  default     = 9094

  validation {
    condition     = var.alertmanager_cluster_port >= 1024 && var.alertmanager_cluster_port <= 65535 && floor(var.alertmanager_cluster_port) == var.alertmanager_cluster_port
    error_message = "alertmanager_cluster_port must be a whole number from 1024 to 65535 (an unprivileged port)."
  }
}

variable "tags" {
  description = "Tags added to every security group."
  type        = map(string)
  default     = {}
}

variable "enable_load_balancer" {
  description = "The scaled layout: a load balancer group (HTTPS from allowed_cidrs), a serving group, and hosts that take HTTPS from the load balancer only (no CIDR rule, no port 80, no SSH)."
  type        = bool
  default     = false
}

variable "serving_port" {
  description = "Port of the serving app on the serving hosts (Ansible's serving_port: mlflow_port + 700, 5700 by default), open to the MLflow group's Prometheus only."
  type        = number
  default     = 5700

  validation {
    condition     = var.serving_port >= 1024 && var.serving_port <= 65535 && floor(var.serving_port) == var.serving_port
    error_message = "serving_port must be a whole number from 1024 to 65535 (an unprivileged port)."
  }
}

variable "allow_nat_to_alb" {
  description = "With enable_load_balancer: let nat_public_ips reach the load balancer on HTTPS (private hosts calling MLflow's public name through the NAT gateway)."
  type        = bool
  default     = false
}

variable "nat_public_ips" {
  description = "Public addresses of the VPC's NAT gateway(s), used with allow_nat_to_alb."
  type        = list(string)
  default     = []
}
