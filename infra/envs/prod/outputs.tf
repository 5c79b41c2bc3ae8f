output "aws_region" {
  description = "Region of the deployment."
  value       = var.aws_region
}

output "vpc_id" {
  description = "VPC of the deployment."
  value       = module.network.vpc_id
}

output "vpc_cidr" {
  description = "IPv4 block of the VPC: the private network whose proxies (the load balancer, serving hosts) each host's nginx believes about a client's address (X-Forwarded-For)."
  value       = module.network.vpc_cidr_block
}

output "mlflow_instance_id" {
  description = "Instance id of the MLflow host (SSM Session Manager target); null in the scaled layout (hosts come and go: see mlflow_autoscaling_group_name)."
  value       = try(module.mlflow.instance_ids[0], null)
}

output "mlflow_public_ip" {
  description = "Elastic IP of the MLflow host; null in the scaled layout (no public address, see alb_dns_name)."
  value       = try(module.mlflow.public_ips[0], null)
}

output "mlflow_private_ip" {
  description = "Private IP of the MLflow host; null in the scaled layout (autoscaling hosts have no fixed address)."
  value       = try(module.mlflow.private_ips[0], null)
}

output "mlflow_public_hostname" {
  description = "DNS name of MLflow when a record was created, else the single host's Elastic IP or the scaled layout's load balancer name."
  value       = length(aws_route53_record.mlflow) > 0 ? aws_route53_record.mlflow[0].fqdn : (local.scaled ? aws_lb.this[0].dns_name : try(module.mlflow.public_ips[0], null))
}

output "trainer_public_ips" {
  description = "Elastic IPs of the trainer hosts (empty without trainers, and in the scaled layout, where they are private)."
  value       = local.scaled ? [] : try(module.trainers[0].public_ips, [])
}

output "trainer_private_ips" {
  description = "Private IPs of the trainer hosts, in order; the first is the DDP rendezvous host."
  value       = try(module.trainers[0].private_ips, [])
}

output "ansible_user" {
  description = "Login user of the Debian 12 AMI."
  value       = "admin"
}

output "db_host" {
  description = "Private endpoint address of the RDS PostgreSQL instance."
  value       = module.database.address
}

output "db_port" {
  description = "PostgreSQL port."
  value       = module.database.port
}

output "db_name" {
  description = "Database for MLflow."
  value       = module.database.db_name
}

output "db_username" {
  description = "Master user name of the database."
  value       = module.database.username
}

output "db_password_secret_arn" {
  description = "ARN of the RDS-managed master-user secret (the ARN only): read only by the provisioning step on the controller, by no host."
  value       = module.database.master_user_secret_arn
}

output "artifacts_bucket" {
  description = "Name of the MLflow artifact bucket."
  value       = module.artifacts.bucket_id
}

output "artifacts_prefix" {
  description = "Key prefix of MLflow artifacts in the bucket."
  value       = var.artifacts_prefix
}

output "artifacts_kms_key_arn" {
  description = "Customer-managed KMS key of the artifact bucket (null when create_kms_key is false)."
  value       = local.artifacts_kms_key_arn
}

output "data_kms_key_arn" {
  description = "Customer-managed KMS key of RDS, the master-user secret and the root volumes (null when create_kms_key is false)."
  value       = local.data_kms_key_arn
}

output "log_bucket" {
  description = "Name of the log bucket (S3 access logs under s3-access/, VPC flow logs under AWSLogs/); null when create_log_bucket is false."
  value       = try(module.logs[0].bucket_id, null)
}

output "mlflow_role_name" {
  description = "IAM role of the MLflow host."
  value       = module.mlflow.role_name
}

# --- Topology (topology.tf) --------------------------------------------------------

output "topology" {
  description = "Layout of the deployment: single or scaled."
  value       = var.topology
}

output "inventory_group_tag" {
  description = "Tag key whose value (mlflow, serving, trainers) names each host's group: the amazon.aws.aws_ec2 dynamic inventory selects by it."
  value       = "mlops_group"
}

output "inventory_filters" {
  description = "EC2 filters that select this deployment's hosts (the dynamic inventory adds the group tag)."
  value       = { "tag:Project" = var.project, "tag:Environment" = var.environment }
}

output "trainer_rendezvous_host" {
  description = "DDP rendezvous address of the trainers: the first trainer's private IP (single), or a private DNS name that follows the first trainer (scaled); null without trainers."
  value       = var.trainer_count == 0 ? null : (local.scaled ? local.rendezvous_fqdn : try(module.trainers[0].private_ips[0], null))
}

output "alb_dns_name" {
  description = "DNS name of the load balancer (null in the single layout)."
  value       = try(aws_lb.this[0].dns_name, null)
}

output "alb_arn" {
  description = "ARN of the load balancer (null in the single layout)."
  value       = try(aws_lb.this[0].arn, null)
}

output "certificate_arn" {
  description = "ACM certificate of the HTTPS listener, given or created (null in the single layout)."
  value       = local.certificate_arn
}

output "mlflow_autoscaling_group_name" {
  description = "Autoscaling group of the MLflow hosts (null in the single layout)."
  value       = module.mlflow.autoscaling_group_name
}

output "serving_autoscaling_group_name" {
  description = "Autoscaling group of the serving hosts (null in the single layout)."
  value       = try(module.serving[0].autoscaling_group_name, null)
}

output "nat_public_ips" {
  description = "Public address of the NAT gateway, the private hosts' source address on the internet (empty unless scaled with private_egress = nat_gateway)."
  value       = module.network.nat_public_ips
}

output "private_zone_name" {
  description = "Private Route 53 zone of the VPC (null in the single layout)."
  value       = local.scaled ? local.private_zone_name : null
}
