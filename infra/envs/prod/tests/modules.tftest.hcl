# Assertions on the resources inside each module (run blocks with a module source), mocked AWS.

mock_provider "aws" {
  # Shared defaults: tests/mocks/aws/aws.tfmock.hcl (path relative to infra/envs/prod).
  source = "./tests/mocks/aws"
}

run "database_is_private_encrypted_and_managed" {
  command = plan

  module {
    source = "../../modules/database"
  }

  variables {
    identifier         = "mlops-xeon-prod"
    subnet_ids         = ["subnet-aaaa", "subnet-bbbb"]
    security_group_ids = ["sg-db"]
  }

  assert {
    condition     = aws_db_instance.this.publicly_accessible == false
    error_message = "RDS must not be publicly accessible."
  }

  assert {
    condition     = aws_db_instance.this.storage_encrypted
    error_message = "RDS storage must be encrypted."
  }

  assert {
    condition     = aws_db_instance.this.manage_master_user_password && aws_db_instance.this.password == null
    error_message = "The master password must be managed by Secrets Manager, never set in Terraform."
  }

  assert {
    condition     = aws_db_instance.this.deletion_protection && !aws_db_instance.this.skip_final_snapshot && aws_db_instance.this.final_snapshot_identifier == "mlops-xeon-prod-final"
    error_message = "Prod defaults: deletion protection and a final snapshot."
  }

  assert {
    condition     = aws_db_instance.this.backup_retention_period == 14 && aws_db_instance.this.multi_az
    error_message = "Prod defaults: 14 days of backups and Multi-AZ."
  }

  assert {
    condition     = one([for p in aws_db_parameter_group.this.parameter : p.value if p.name == "rds.force_ssl"]) == "1"
    error_message = "PostgreSQL must force TLS."
  }
}

run "database_force_ssl_wins_over_parameters" {
  command = plan

  module {
    source = "../../modules/database"
  }

  variables {
    identifier         = "mlops-xeon-prod"
    subnet_ids         = ["subnet-aaaa", "subnet-bbbb"]
    security_group_ids = ["sg-db"]
    parameters         = { "rds.force_ssl" = "0", "log_min_duration_statement" = "500" }
  }

  assert {
    condition     = one([for p in aws_db_parameter_group.this.parameter : p.value if p.name == "rds.force_ssl"]) == "1"
    error_message = "rds.force_ssl = 1 must be merged in last, whatever the parameters say."
  }

  assert {
    condition     = one([for p in aws_db_parameter_group.this.parameter : p.value if p.name == "log_min_duration_statement"]) == "500"
    error_message = "The other parameters must pass through."
  }
}

run "database_rejects_graviton_class" {
  command = plan

  module {
    source = "../../modules/database"
  }

  variables {
    identifier         = "mlops-xeon-prod"
    subnet_ids         = ["subnet-aaaa", "subnet-bbbb"]
    security_group_ids = ["sg-db"]
    instance_class     = "db.m7g.large"
  }

  expect_failures = [var.instance_class]
}

run "bucket_is_locked_down" {
  command = apply

  module {
    source = "../../modules/s3_bucket"
  }

  variables {
    bucket_name = "mlops-xeon-test-artifacts"
    kms_key_arn = "arn:aws:kms:eu-west-1:123456789012:key/11111111-2222-3333-4444-555555555555"
  }

  assert {
    condition = (aws_s3_bucket_public_access_block.this.block_public_acls && aws_s3_bucket_public_access_block.this.block_public_policy
    && aws_s3_bucket_public_access_block.this.ignore_public_acls && aws_s3_bucket_public_access_block.this.restrict_public_buckets)
    error_message = "All four public access blocks must be on."
  }

  assert {
    condition     = aws_s3_bucket_versioning.this.versioning_configuration[0].status == "Enabled"
    error_message = "Versioning must be enabled."
  }

  assert {
    condition     = one([for r in aws_s3_bucket_server_side_encryption_configuration.this.rule : one(r.apply_server_side_encryption_by_default).sse_algorithm]) == "aws:kms"
    error_message = "Default encryption must be SSE-KMS."
  }

  assert {
    condition = anytrue([
      for s in jsondecode(aws_s3_bucket_policy.this.policy).Statement :
      s.Effect == "Deny" && s.Condition.Bool["aws:SecureTransport"] == "false" && s.Action == "s3:*"
    ])
    error_message = "The bucket policy must deny every non-TLS request."
  }

  assert {
    condition     = one([for r in aws_s3_bucket_lifecycle_configuration.this.rule : one(r.noncurrent_version_expiration).noncurrent_days]) == 90
    error_message = "Noncurrent versions must expire."
  }

  assert {
    condition     = length(aws_s3_bucket_logging.this) == 0
    error_message = "Access logging is off unless a log bucket is given."
  }

  assert {
    condition     = alltrue([for r in aws_s3_bucket_lifecycle_configuration.this.rule : length(r.expiration) == 0])
    error_message = "Current objects (artifacts) never expire unless expiration_days is set."
  }
}

run "bucket_logging_when_asked" {
  command = plan

  module {
    source = "../../modules/s3_bucket"
  }

  variables {
    bucket_name           = "mlops-xeon-test-artifacts"
    sse_algorithm         = "AES256"
    enable_access_logging = true
    access_log_bucket     = "my-access-logs"
  }

  assert {
    condition     = aws_s3_bucket_logging.this[0].target_bucket == "my-access-logs" && aws_s3_bucket_logging.this[0].target_prefix == "s3-access/mlops-xeon-test-artifacts/"
    error_message = "access_log_bucket must enable server access logging under s3-access/<bucket>/."
  }
}

run "log_bucket_sse_s3_retention_and_grants" {
  command = plan

  module {
    source = "../../modules/s3_bucket"
  }

  variables {
    bucket_name     = "mlops-xeon-test-logs"
    sse_algorithm   = "AES256"
    expiration_days = 365
    policy_statements = [{
      Sid       = "S3ServerAccessLogs"
      Effect    = "Allow"
      Principal = { Service = "logging.s3.amazonaws.com" }
      Action    = "s3:PutObject"
      Resource  = "arn:aws:s3:::mlops-xeon-test-logs/s3-access/x/*"
    }]
  }

  assert {
    condition     = one([for r in aws_s3_bucket_lifecycle_configuration.this.rule : one(r.expiration).days]) == 365
    error_message = "expiration_days must expire current objects (log retention)."
  }

  assert {
    condition = (length(jsondecode(aws_s3_bucket_policy.this.policy).Statement) == 2
    && jsondecode(aws_s3_bucket_policy.this.policy).Statement[0].Sid == "DenyInsecureTransport")
    error_message = "policy_statements are appended after the TLS-only deny."
  }
}

run "hosts_are_hardened_xeons" {
  command = apply

  module {
    source = "../../modules/xeon_hosts"
  }

  variables {
    name               = "mlops-xeon-prod-mlflow"
    instance_type      = "m7i.large"
    ami_id             = "ami-0123456789abcdef0"
    subnet_ids         = ["subnet-aaaa", "subnet-bbbb"]
    security_group_ids = ["sg-mlflow"]
    policy_json        = "{\"Version\":\"2012-10-17\",\"Statement\":[]}"
    ssm_parameter_path = "/mlops-xeon/prod"
  }

  assert {
    condition     = aws_instance.this[0].metadata_options[0].http_tokens == "required"
    error_message = "IMDSv2 must be required."
  }

  assert {
    condition     = aws_instance.this[0].root_block_device[0].encrypted && aws_instance.this[0].root_block_device[0].volume_type == "gp3"
    error_message = "The root volume must be encrypted gp3."
  }

  assert {
    condition     = can(regex("^(m7i|m6i|c7i|r7i)\\.", aws_instance.this[0].instance_type))
    error_message = "The instance must be an Intel Xeon family."
  }

  assert {
    condition     = aws_iam_instance_profile.this.role == aws_iam_role.this.name && length(aws_eip.this) == 1
    error_message = "Hosts get an instance profile (no static keys) and an Elastic IP."
  }

  assert {
    condition = alltrue([
      for s in jsondecode(aws_iam_role_policy.ssm[0].policy).Statement :
      alltrue([for r in s.Resource : r == "arn:aws:ssm:eu-west-1:123456789012:parameter/mlops-xeon/prod/*"])
      if length([for a in s.Action : a if startswith(a, "ssm:GetParameter")]) > 0
    ]) && length([for s in jsondecode(aws_iam_role_policy.ssm[0].policy).Statement : s if contains(s.Action, "ssm:GetParameter")]) == 1
    error_message = "ssm:GetParameter* only on the platform's parameter path, never on every parameter."
  }

  assert {
    condition = alltrue(flatten([
      for s in jsondecode(aws_iam_role_policy.ssm[0].policy).Statement : [
        for a in s.Action : contains(["ssmmessages", "ec2messages"], split(":", a)[0]) if contains(s.Resource, "*")
      ]
    ]))
    error_message = "Only the ssmmessages/ec2messages channel actions (which take no narrower resource) may use Resource \"*\"."
  }
}

run "hosts_reject_amd" {
  command = plan

  module {
    source = "../../modules/xeon_hosts"
  }

  variables {
    name               = "x"
    instance_type      = "c7a.large"
    ami_id             = "ami-0123456789abcdef0"
    subnet_ids         = ["subnet-aaaa"]
    security_group_ids = ["sg-x"]
    policy_json        = "{}"
    ssm_parameter_path = "/x"
  }

  expect_failures = [var.instance_type]
}

run "security_groups_least_privilege" {
  command = apply

  module {
    source = "../../modules/security_groups"
  }

  variables {
    name          = "mlops-xeon-prod"
    vpc_id        = "vpc-0123456789abcdef0"
    allowed_cidrs = ["203.0.113.0/24"]
    admin_cidrs   = ["198.51.100.7/32"]
  }

  assert {
    condition     = alltrue([for r in aws_security_group_rule.ssh_in : !contains(r.cidr_blocks, "0.0.0.0/0") && r.from_port == 22])
    error_message = "SSH must never be open to 0.0.0.0/0."
  }

  assert {
    condition     = length(aws_security_group_rule.alertmanager_cluster_in) == 0 && length(aws_security_group_rule.alertmanager_cluster_out) == 0
    error_message = "One MLflow host (no load balancer) runs one Alertmanager: no gossip port is opened."
  }

  assert {
    condition = alltrue([
      for r in aws_security_group_rule.db_in : r.source_security_group_id != null && try(length(r.cidr_blocks), 0) == 0 && r.security_group_id == aws_security_group.db.id
    ]) && length(aws_security_group_rule.db_in) == 2
    error_message = "PostgreSQL must be reachable only from the MLflow and trainer security groups."
  }

  assert {
    condition     = alltrue([for r in aws_security_group_rule.mlflow_web_in : r.cidr_blocks == tolist(["203.0.113.0/24"])])
    error_message = "nginx must be open to allowed_cidrs only."
  }

  assert {
    condition = alltrue([
      for r in [aws_security_group_rule.trainers_in, aws_security_group_rule.trainers_out] :
      r.self && r.security_group_id == aws_security_group.trainer.id && r.protocol == "tcp"
      && r.from_port == 0 && r.to_port == 65535 && try(length(r.cidr_blocks), 0) == 0
    ])
    error_message = "Trainers accept and open any TCP port (gloo's ephemeral ports) to other trainers only, never a CIDR."
  }

  assert {
    condition = (
      aws_security_group_rule.node_exporter_from_mlflow.type == "ingress"
      && aws_security_group_rule.node_exporter_from_mlflow.security_group_id == aws_security_group.trainer.id
      && aws_security_group_rule.node_exporter_from_mlflow.source_security_group_id == aws_security_group.mlflow.id
      && aws_security_group_rule.node_exporter_to_trainers.type == "egress"
      && aws_security_group_rule.node_exporter_to_trainers.security_group_id == aws_security_group.mlflow.id
      && aws_security_group_rule.node_exporter_to_trainers.source_security_group_id == aws_security_group.trainer.id
      && alltrue([
        for r in [aws_security_group_rule.node_exporter_from_mlflow, aws_security_group_rule.node_exporter_to_trainers] :
        r.protocol == "tcp" && r.from_port == 9100 && r.to_port == 9100 && try(length(r.cidr_blocks), 0) == 0 && r.self != true
      ])
    )
    error_message = "The trainers' node exporter (9100) must be reachable from the MLflow group (Prometheus) only, and the MLflow group may open it only to the trainer group."
  }
}

run "security_groups_no_ssh_by_default" {
  command = plan

  module {
    source = "../../modules/security_groups"
  }

  variables {
    name          = "mlops-xeon-prod"
    vpc_id        = "vpc-0123456789abcdef0"
    allowed_cidrs = ["203.0.113.0/24"]
  }

  assert {
    condition     = length(aws_security_group_rule.ssh_in) == 0
    error_message = "Without admin_cidrs no SSH rule exists."
  }
}
