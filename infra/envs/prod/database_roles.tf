# Least privilege in the database (#16): the running MLflow server connects as a role of its own,
# which owns the MLflow database and nothing else; the application (monitoring) database keeps its
# own role. The RDS master-user secret is readable by no instance role: only the operator's one-off
# provisioning step (`make provision`, from the controller, with the operator's AWS credentials)
# reads it, to create both roles and hand the MLflow database to the server's role
# (ansible/roles/rds_roles).

variable "mlflow_db_username" {
  description = "Database role the MLflow server connects as (created by `make provision`; must differ from the master user)."
  type        = string
  default     = "mlflow_server"

  validation {
    condition     = can(regex("^[a-z_][a-z0-9_]{0,62}$", var.mlflow_db_username))
    error_message = "mlflow_db_username must be a PostgreSQL identifier: lower-case letters, digits and _, not starting with a digit, at most 63 characters."
  }
  validation {
    condition     = var.mlflow_db_username != module.database.username
    error_message = "mlflow_db_username must differ from the RDS master user: the running server never holds the master credentials."
  }
}

# The value ({"username", "password"}, the same shape as the RDS-managed secret) is generated and
# put by the provisioning step, so it is in no Terraform state; re-running `make provision` after
# `aws secretsmanager put-secret-value` rotates it (the step aligns the role's password).
resource "aws_secretsmanager_secret" "mlflow_db" {
  #checkov:skip=CKV2_AWS_57:A rotation Lambda would need the master credentials at run time, which this design keeps off every running service; the provisioning step rotates it instead.
  name                    = "${local.name}/database/${var.mlflow_db_username}"
  description             = "${local.name}: password of the MLflow server's database role (value put by make provision)."
  kms_key_id              = local.data_kms_key_arn
  recovery_window_in_days = 7
}

locals {
  # The MLflow hosts read their own role's secret at service start (never the master's), and the
  # data key only to decrypt it through Secrets Manager.
  secret_statements = concat([{
    Sid      = "ReadMlflowDatabaseSecret"
    Effect   = "Allow"
    Action   = ["secretsmanager:GetSecretValue"]
    Resource = [aws_secretsmanager_secret.mlflow_db.arn]
    }], var.create_kms_key ? [{
    Sid       = "DecryptDatabaseSecret"
    Effect    = "Allow"
    Action    = ["kms:Decrypt"]
    Resource  = [local.data_kms_key_arn]
    Condition = { StringEquals = { "kms:ViaService" = "secretsmanager.${var.aws_region}.amazonaws.com" } }
  }] : [])
}

output "mlflow_db_username" {
  description = "Database role of the MLflow server (not the master user)."
  value       = var.mlflow_db_username
}

output "mlflow_db_secret_arn" {
  description = "ARN of the secret with the MLflow server role's password (the ARN only; its value is put by make provision)."
  value       = aws_secretsmanager_secret.mlflow_db.arn
}
