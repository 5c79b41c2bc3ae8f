# Plan/apply-time assertions against a mocked AWS provider: no credentials, no network.
# Run with `make infra-test` (or `terraform test` in infra/envs/prod after init).

mock_provider "aws" {
  mock_resource "aws_iam_role" {
    defaults = {
      arn = "arn:aws:iam::123456789012:role/mock-role"
    }
  }

  mock_data "aws_availability_zones" {
    defaults = {
      names = ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
    }
  }

  mock_data "aws_iam_policy_document" {
    defaults = {
      json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}"
    }
  }

  mock_resource "aws_db_instance" {
    defaults = {
      master_user_secret = [{
        secret_arn    = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:rds!db-mock-AbCdEf"
        kms_key_id    = "arn:aws:kms:eu-west-1:123456789012:key/mock"
        secret_status = "active"
      }]
    }
  }

  mock_resource "aws_s3_bucket" {
    defaults = {
      arn = "arn:aws:s3:::mlops-xeon-prod-mlflow-artifacts-eu-west-1"
    }
  }

  mock_resource "aws_kms_key" {
    defaults = {
      arn = "arn:aws:kms:eu-west-1:123456789012:key/11111111-2222-3333-4444-555555555555"
    }
  }
}

variables {
  allowed_cidrs = ["203.0.113.0/24"]
  ami_id        = "ami-0123456789abcdef0"
}

# --- Whole environment -------------------------------------------------------

run "environment_defaults" {
  command = apply

  assert {
    condition     = output.db_password_secret_arn == "arn:aws:secretsmanager:eu-west-1:123456789012:secret:rds!db-mock-AbCdEf"
    error_message = "The output must carry the ARN of the RDS-managed master-user secret."
  }

  assert {
    condition     = aws_kms_key.this[0].enable_key_rotation
    error_message = "The customer-managed KMS key must rotate."
  }

  assert {
    condition = alltrue([
      for s in jsondecode(module.mlflow.role_policy).Statement :
      alltrue([for r in s.Resource : startswith(r, "arn:aws:s3:::mlops-xeon-prod-mlflow-artifacts-eu-west-1") || r == output.db_password_secret_arn || r == output.kms_key_arn])
    ])
    error_message = "The MLflow role may only touch the artifact bucket, the DB secret and the CMK."
  }

  assert {
    condition = contains(flatten([
      for s in jsondecode(module.mlflow.role_policy).Statement : s.Resource if contains(s.Action, "secretsmanager:GetSecretValue")
    ]), output.db_password_secret_arn) && length(flatten([for s in jsondecode(module.mlflow.role_policy).Statement : s.Resource if contains(s.Action, "secretsmanager:GetSecretValue")])) == 1
    error_message = "secretsmanager:GetSecretValue must be granted on the one RDS secret ARN only."
  }

  assert {
    condition = alltrue([
      for s in jsondecode(module.mlflow.role_policy).Statement : !contains(s.Action, "s3:*") && !contains(s.Resource, "*")
    ])
    error_message = "No wildcard actions or resources in the host policy."
  }

  assert {
    condition     = contains(flatten([for s in jsondecode(module.mlflow.role_policy).Statement : s.Resource if contains(s.Action, "s3:PutObject")]), "arn:aws:s3:::mlops-xeon-prod-mlflow-artifacts-eu-west-1/mlflow/*")
    error_message = "Object access must be scoped to the artifact prefix."
  }

  assert {
    condition     = output.ansible_user == "admin" && length(output.trainer_public_ips) == 0
    error_message = "Debian's admin user, and no trainers by default."
  }

  assert {
    condition     = output.mlflow_public_hostname == output.mlflow_public_ip
    error_message = "Without DNS the public hostname is the Elastic IP."
  }
}

run "trainers_and_dns" {
  command = apply

  variables {
    trainer_count   = 2
    route53_zone_id = "Z0123456789ABCDEFGHIJ"
    dns_name        = "mlflow.example.com"
  }

  assert {
    condition     = length(output.trainer_public_ips) == 2 && length(output.trainer_private_ips) == 2
    error_message = "trainer_count = 2 must create two trainers with addresses."
  }

  assert {
    condition = alltrue([
      for s in jsondecode(module.trainers[0].role_policy).Statement : !contains(s.Action, "secretsmanager:GetSecretValue")
    ])
    error_message = "Trainers do not read the database secret."
  }

  assert {
    condition     = aws_route53_record.mlflow[0].name == "mlflow.example.com"
    error_message = "The DNS record must be created when a zone and name are given."
  }
}

run "sse_s3_without_cmk" {
  command = plan

  variables {
    create_kms_key          = false
    artifacts_sse_algorithm = "AES256"
  }

  assert {
    condition     = length(aws_kms_key.this) == 0
    error_message = "create_kms_key = false must not create a key."
  }
}

# --- Validation blocks reject bad input ------------------------------------

run "rejects_amd_instance_family" {
  command = plan

  variables {
    mlflow_instance_type = "m7a.large"
  }

  expect_failures = [var.mlflow_instance_type]
}

run "rejects_graviton_trainer" {
  command = plan

  variables {
    trainer_instance_type = "c7g.4xlarge"
  }

  expect_failures = [var.trainer_instance_type]
}

run "rejects_malformed_cidr" {
  command = plan

  variables {
    allowed_cidrs = ["203.0.113.0/33"]
  }

  expect_failures = [var.allowed_cidrs]
}

run "rejects_ssh_from_anywhere" {
  command = plan

  variables {
    admin_cidrs = ["0.0.0.0/0"]
  }

  expect_failures = [var.admin_cidrs]
}

run "rejects_unknown_sse" {
  command = plan

  variables {
    artifacts_sse_algorithm = "aws:kms:dsse"
  }

  expect_failures = [var.artifacts_sse_algorithm]
}
