output "address" {
  description = "Private DNS name of the instance."
  value       = aws_db_instance.this.address
}

output "port" {
  description = "PostgreSQL port."
  value       = aws_db_instance.this.port
}

output "db_name" {
  description = "Database for MLflow."
  value       = aws_db_instance.this.db_name
}

output "username" {
  description = "Master user name (the password lives in Secrets Manager only)."
  value       = aws_db_instance.this.username
}

output "master_user_secret_arn" {
  description = "ARN of the Secrets Manager secret AWS manages for the master user (the ARN, never the value)."
  value       = try(aws_db_instance.this.master_user_secret[0].secret_arn, null)
}

output "instance_arn" {
  description = "ARN of the RDS instance."
  value       = aws_db_instance.this.arn
}

output "parameters" {
  description = "The parameters applied to the parameter group (rds.force_ssl = 1 included)."
  value       = local.parameters
}

output "kms_key_arn" {
  description = "KMS key of the storage (the customer-managed key given, or the AWS-managed key's ARN)."
  value       = aws_db_instance.this.kms_key_id
}
