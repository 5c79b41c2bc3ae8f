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

output "private_route_table_id" {
  description = "Route table of the created private subnets (null for an existing VPC)."
  value       = try(aws_route_table.private[0].id, null)
}

output "nat_public_ips" {
  description = "Public address of the NAT gateway (empty unless private_egress is nat_gateway): the source of the private hosts' traffic to the internet."
  value       = aws_eip.nat[*].public_ip
}

output "vpc_endpoint_ids" {
  description = "VPC endpoints by service (s3 gateway and the interface endpoints)."
  value       = merge({ for k, e in aws_vpc_endpoint.interface : k => e.id }, local.create_s3_endpoint ? { s3 = aws_vpc_endpoint.s3[0].id } : {})
}
