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
  description = "The inline least-privilege policy of the role (JSON; null without policy_json)."
  value       = try(aws_iam_role_policy.this[0].policy, null)
}

output "ssm_policy" {
  description = "The inline SSM policy of the role (JSON; null when enable_ssm is false)."
  value       = try(aws_iam_role_policy.ssm[0].policy, null)
}

output "autoscaling_group_name" {
  description = "Name of the autoscaling group (null without create_autoscaling_group)."
  value       = try(aws_autoscaling_group.this[0].name, null)
}

output "autoscaling_group_arn" {
  description = "ARN of the autoscaling group (null without create_autoscaling_group)."
  value       = try(aws_autoscaling_group.this[0].arn, null)
}

output "launch_template_id" {
  description = "Id of the launch template (null without create_autoscaling_group)."
  value       = try(aws_launch_template.this[0].id, null)
}

output "subnet_ids" {
  description = "Subnets the hosts run in: the fixed instances' subnets, or the autoscaling group's."
  value       = var.create_autoscaling_group ? tolist(aws_autoscaling_group.this[0].vpc_zone_identifier) : aws_instance.this[*].subnet_id
}

output "autoscaling_group" {
  description = "Sizes, subnets, target groups and health check type of the autoscaling group (null without create_autoscaling_group)."
  value = var.create_autoscaling_group ? {
    min_size          = aws_autoscaling_group.this[0].min_size
    max_size          = aws_autoscaling_group.this[0].max_size
    desired_capacity  = aws_autoscaling_group.this[0].desired_capacity
    target_group_arns = aws_autoscaling_group.this[0].target_group_arns
    health_check_type = aws_autoscaling_group.this[0].health_check_type
  } : null
}

output "launch_template" {
  description = "Hardening of the launch template as set (null without create_autoscaling_group): public address, IMDSv2, root volume encryption and key, instance tags."
  value = var.create_autoscaling_group ? {
    associate_public_ip_address = aws_launch_template.this[0].network_interfaces[0].associate_public_ip_address
    http_tokens                 = aws_launch_template.this[0].metadata_options[0].http_tokens
    http_put_response_hop_limit = aws_launch_template.this[0].metadata_options[0].http_put_response_hop_limit
    root_encrypted              = aws_launch_template.this[0].block_device_mappings[0].ebs[0].encrypted
    root_volume_type            = aws_launch_template.this[0].block_device_mappings[0].ebs[0].volume_type
    root_kms_key_id             = aws_launch_template.this[0].block_device_mappings[0].ebs[0].kms_key_id
    instance_tags               = aws_launch_template.this[0].tag_specifications[0].tags
  } : null
}

output "instance_tags" {
  description = "Tags of the fixed instances (empty with create_autoscaling_group)."
  value       = aws_instance.this[*].tags
}
