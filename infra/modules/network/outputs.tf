output "vpc_id" {
  description = "Id of the VPC (created or given)."
  value       = var.create_vpc ? aws_vpc.this[0].id : var.vpc_id
}

output "vpc_cidr_block" {
  description = "CIDR block of the created VPC (null for an existing VPC)."
  value       = var.create_vpc ? aws_vpc.this[0].cidr_block : null
}

output "public_subnet_ids" {
  description = "Public subnets (two AZs) for the hosts."
  value       = var.create_vpc ? aws_subnet.public[*].id : var.public_subnet_ids
}

output "private_subnet_ids" {
  description = "Private subnets (two AZs) for the database."
  value       = var.create_vpc ? aws_subnet.private[*].id : var.private_subnet_ids
}

output "azs" {
  description = "Availability zones of the created subnets."
  value       = local.azs
}

output "flow_log_id" {
  description = "Id of the VPC flow log (null when enable_flow_logs is false)."
  value       = try(aws_flow_log.this[0].id, null)
}

output "flow_log_destination" {
  description = "S3 bucket ARN receiving the VPC flow logs (null when enable_flow_logs is false)."
  value       = try(aws_flow_log.this[0].log_destination, null)
}
