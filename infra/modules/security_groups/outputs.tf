output "mlflow_security_group_id" {
  description = "Security group of the MLflow host."
  value       = aws_security_group.mlflow.id
}

output "trainer_security_group_id" {
  description = "Security group of the trainer hosts."
  value       = aws_security_group.trainer.id
}

output "db_security_group_id" {
  description = "Security group of the PostgreSQL instance."
  value       = aws_security_group.db.id
}

output "alb_security_group_id" {
  description = "Security group of the load balancer (null without enable_load_balancer)."
  value       = try(aws_security_group.alb[0].id, null)
}

output "serving_security_group_id" {
  description = "Security group of the serving hosts (null without enable_load_balancer)."
  value       = try(aws_security_group.serving[0].id, null)
}
