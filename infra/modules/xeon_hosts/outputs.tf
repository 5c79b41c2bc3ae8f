output "instance_ids" {
  description = "Ids of the hosts."
  value       = aws_instance.this[*].id
}

output "private_ips" {
  description = "Private IPv4 addresses of the hosts."
  value       = aws_instance.this[*].private_ip
}

output "public_ips" {
  description = "Public addresses of the hosts (the Elastic IPs when create_eip)."
  value       = var.create_eip ? aws_eip.this[*].public_ip : aws_instance.this[*].public_ip
}

output "role_name" {
  description = "Name of the hosts' IAM role."
  value       = aws_iam_role.this.name
}

output "role_arn" {
  description = "ARN of the hosts' IAM role."
  value       = aws_iam_role.this.arn
}

output "role_policy" {
  description = "The inline least-privilege policy of the role (JSON)."
  value       = aws_iam_role_policy.this.policy
}

output "ssm_policy" {
  description = "The inline SSM policy of the role (JSON; null when enable_ssm is false)."
  value       = try(aws_iam_role_policy.ssm[0].policy, null)
}
