output "aws_region" {
  description = "Region of the deployment."
  value       = var.aws_region
}

output "vpc_id" {
  description = "VPC of the deployment."
  value       = module.network.vpc_id
}

output "mlflow_instance_id" {
  description = "Instance id of the MLflow host (SSM Session Manager target)."
  value       = module.mlflow.instance_ids[0]
}

output "mlflow_public_ip" {
  description = "Elastic IP of the MLflow host."
  value       = module.mlflow.public_ips[0]
}

output "mlflow_private_ip" {
  description = "Private IP of the MLflow host."
  value       = module.mlflow.private_ips[0]
}

output "mlflow_public_hostname" {
  description = "DNS name of the MLflow host when a record was created, else its Elastic IP."
  value       = length(aws_route53_record.mlflow) > 0 ? aws_route53_record.mlflow[0].fqdn : module.mlflow.public_ips[0]
}

output "trainer_public_ips" {
  description = "Elastic IPs of the trainer hosts (empty without trainers)."
  value       = try(module.trainers[0].public_ips, [])
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
  description = "ARN of the Secrets Manager secret with the master-user password (the ARN only, never the value)."
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
