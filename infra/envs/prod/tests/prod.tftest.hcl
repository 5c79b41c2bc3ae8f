# Plan/apply-time assertions against a mocked AWS provider: no credentials, no network.
# Run with `make infra-test` (or `terraform test` in infra/envs/prod after init).

mock_provider "aws" {
  # Shared defaults: tests/mocks/aws/aws.tfmock.hcl (path relative to infra/envs/prod).
  source = "./tests/mocks/aws"
}

# Distinct ARNs where the tests tell resources of one type apart.
override_resource {
  target = aws_kms_key.artifacts
  values = { arn = "arn:aws:kms:eu-west-1:123456789012:key/aaaaaaaa-0000-0000-0000-000000000001" }
}

override_resource {
  target = aws_kms_key.data
  values = { arn = "arn:aws:kms:eu-west-1:123456789012:key/dddddddd-0000-0000-0000-000000000002" }
}

override_resource {
  target = module.logs[0].aws_s3_bucket.this
  values = { arn = "arn:aws:s3:::mlops-xeon-prod-logs-eu-west-1", id = "mlops-xeon-prod-logs-eu-west-1" }
}

override_resource {
  target = aws_secretsmanager_secret.mlflow_db
  values = { arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:mlops-xeon-prod/database/mlflow_server-AbCdEf" }
}

override_resource {
  target = module.mlflow.aws_iam_role.this
  values = { arn = "arn:aws:iam::123456789012:role/mlops-xeon-prod-mlflow-mock" }
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
    condition     = aws_kms_key.artifacts[0].enable_key_rotation && aws_kms_key.data[0].enable_key_rotation
    error_message = "The customer-managed KMS keys must rotate."
  }

  assert {
    condition = alltrue([
      for s in jsondecode(module.mlflow.role_policy).Statement :
      alltrue([for r in s.Resource : startswith(r, "arn:aws:s3:::mlops-xeon-prod-mlflow-artifacts-eu-west-1") || contains([output.mlflow_db_secret_arn, output.artifacts_kms_key_arn, output.data_kms_key_arn], r)])
    ])
    error_message = "The MLflow role may only touch the artifact bucket, its own DB role's secret and the two CMKs."
  }

  # --- KMS: a key per data class, explicit key policies ---

  assert {
    condition = (output.artifacts_kms_key_arn != output.data_kms_key_arn
      && module.artifacts.kms_key_arn == output.artifacts_kms_key_arn
    && module.database.kms_key_arn == output.data_kms_key_arn)
    error_message = "Artifacts are encrypted with the artifacts key, the database with the separate data key."
  }

  assert {
    condition = alltrue([
      for k in [aws_kms_key.artifacts[0], aws_kms_key.data[0]] : anytrue([
        for s in jsondecode(k.policy).Statement :
        s.Effect == "Allow" && s.Principal.AWS == "arn:aws:iam::123456789012:root" && s.Action == "kms:*"
      ])
    ])
    error_message = "Each key policy must let the account root administer the key."
  }

  assert {
    condition = alltrue(flatten([
      for k in [aws_kms_key.artifacts[0], aws_kms_key.data[0]] : [
        for s in jsondecode(k.policy).Statement : alltrue([
          for a in flatten([s.Action]) : contains(["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey"], a)
        ]) if s.Principal.AWS != "arn:aws:iam::123456789012:root"
      ]
    ]))
    error_message = "Roles other than the account root get only kms:Encrypt, kms:Decrypt and kms:GenerateDataKey."
  }

  assert {
    condition = tolist(one([
      for s in jsondecode(aws_kms_key.artifacts[0].policy).Statement : s.Principal.AWS if s.Sid == "HostsUseThroughS3"
    ])) == tolist(["arn:aws:iam::123456789012:role/mlops-xeon-prod-mlflow-mock"])
    error_message = "Without trainers, only the MLflow role may use the artifacts key."
  }

  assert {
    condition = one([
      for s in jsondecode(aws_kms_key.data[0].policy).Statement : s.Condition.StringEquals["kms:ViaService"] if s.Sid == "MlflowDecryptsDatabaseSecret"
    ]) == "secretsmanager.eu-west-1.amazonaws.com"
    error_message = "The MLflow role may decrypt with the data key only through Secrets Manager."
  }

  # --- S3 listing, logs, SSM ---

  assert {
    condition = tolist(one([
      for s in jsondecode(module.mlflow.role_policy).Statement : s.Condition.StringLike["s3:prefix"] if s.Sid == "ListArtifactPrefix"
    ])) == tolist(["mlflow/", "mlflow/*"])
    error_message = "Listing must be limited to the artifact prefix (no empty prefix that lists every key)."
  }

  assert {
    condition     = module.artifacts.access_log_target == "mlops-xeon-prod-logs-eu-west-1" && output.log_bucket == "mlops-xeon-prod-logs-eu-west-1"
    error_message = "Prod defaults: the artifact bucket's access logs go to the log bucket."
  }

  assert {
    condition     = module.network.flow_log_id != null && module.network.flow_log_destination == "arn:aws:s3:::mlops-xeon-prod-logs-eu-west-1"
    error_message = "Prod defaults: VPC flow logs into the log bucket."
  }

  assert {
    condition = alltrue([
      for s in jsondecode(module.logs[0].bucket_policy).Statement :
      s.Condition.StringEquals["aws:SourceAccount"] == "123456789012" if s.Effect == "Allow"
    ])
    error_message = "Log delivery grants must be limited to this account's sources."
  }

  assert {
    condition = module.mlflow.ssm_policy != null && alltrue([
      for s in jsondecode(module.mlflow.ssm_policy).Statement :
      tolist(s.Resource) == tolist(["arn:aws:ssm:eu-west-1:123456789012:parameter/mlops-xeon/prod/*"]) if contains(s.Action, "ssm:GetParameter")
    ])
    error_message = "SSM parameters are readable only under /<project>/<environment>/."
  }

  assert {
    condition     = module.database.parameters["rds.force_ssl"] == "1"
    error_message = "rds.force_ssl = 1 must reach the parameter group."
  }

  assert {
    condition = contains(flatten([
      for s in jsondecode(module.mlflow.role_policy).Statement : s.Resource if contains(s.Action, "secretsmanager:GetSecretValue")
    ]), output.mlflow_db_secret_arn) && length(flatten([for s in jsondecode(module.mlflow.role_policy).Statement : s.Resource if contains(s.Action, "secretsmanager:GetSecretValue")])) == 1
    error_message = "secretsmanager:GetSecretValue must be granted on the MLflow server role's secret only."
  }

  assert {
    condition     = !strcontains(module.mlflow.role_policy, output.db_password_secret_arn)
    error_message = "No host role may read the RDS master-user secret: only the provisioning step on the controller does."
  }

  assert {
    condition     = output.mlflow_db_username == "mlflow_server" && output.mlflow_db_username != output.db_username
    error_message = "The MLflow server connects as a role of its own, never as the master user."
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
    condition = alltrue([
      for s in jsondecode(module.trainers[0].role_policy).Statement : !contains(s.Action, "s3:DeleteObject") && !contains(s.Action, "s3:DeleteObjectVersion")
    ]) && anytrue([for s in jsondecode(module.mlflow.role_policy).Statement : contains(s.Action, "s3:DeleteObject")])
    error_message = "Trainers cannot delete artifacts; only the MLflow host (artifact deletion, gc) can."
  }

  assert {
    condition = alltrue([
      for s in jsondecode(module.trainers[0].role_policy).Statement : !contains(s.Resource, output.data_kms_key_arn)
    ])
    error_message = "Trainers get no use of the data key."
  }

  assert {
    condition = length(one([
      for s in jsondecode(aws_kms_key.artifacts[0].policy).Statement : s.Principal.AWS if s.Sid == "HostsUseThroughS3"
    ])) == 2
    error_message = "With trainers, the MLflow and trainer roles may use the artifacts key."
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
    condition     = length(aws_kms_key.artifacts) == 0 && length(aws_kms_key.data) == 0
    error_message = "create_kms_key = false must not create a key."
  }

  assert {
    condition     = alltrue([for s in jsondecode(module.mlflow.role_policy).Statement : !startswith(s.Sid, "UseArtifactsKey") && s.Sid != "DecryptDatabaseSecret"])
    error_message = "Without CMKs the roles get no KMS statements."
  }
}

run "no_logs_when_switched_off" {
  command = plan

  variables {
    create_log_bucket = false
    enable_flow_logs  = false
  }

  assert {
    condition     = length(module.logs) == 0 && module.network.flow_log_id == null && module.artifacts.access_log_target == null
    error_message = "create_log_bucket = false and enable_flow_logs = false create no log bucket, flow log or access logging."
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
