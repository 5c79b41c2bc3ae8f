# Refusals: every guard of the security review (issue #16) rejects bad input at plan time, each
# run with expect_failures naming the variable or check that must fail. Mocked AWS, no network.

mock_provider "aws" {
  # Shared defaults: tests/mocks/aws/aws.tfmock.hcl (path relative to infra/envs/prod).
  source = "./tests/mocks/aws"
}

variables {
  allowed_cidrs = ["203.0.113.0/24"]
  ami_id        = "ami-0123456789abcdef0"
}

# --- SSH guards (envs/prod) ----------------------------------------------------

run "ssh_rejects_two_halves_of_the_internet" {
  # 0.0.0.0/1 + 128.0.0.0/1 is 0.0.0.0/0 in two pieces.
  command = plan

  variables {
    admin_cidrs = ["0.0.0.0/1", "128.0.0.0/1"]
  }

  expect_failures = [var.admin_cidrs]
}

run "ssh_rejects_non_canonical_prefix" {
  # "/00" parses in Go as /0; the canonical-form rule refuses it.
  command = plan

  variables {
    admin_cidrs = ["0.0.0.0/00"]
  }

  expect_failures = [var.admin_cidrs]
}

run "ssh_rejects_leading_zero_octet" {
  # Octets with leading zeros are ambiguous (octal in some tools).
  command = plan

  variables {
    admin_cidrs = ["010.0.0.0/24"]
  }

  expect_failures = [var.admin_cidrs]
}

run "ssh_rejects_host_bits" {
  # 198.51.100.7/24 is not a network address (means 198.51.100.0/24).
  command = plan

  variables {
    admin_cidrs = ["198.51.100.7/24"]
  }

  expect_failures = [var.admin_cidrs]
}

run "ssh_rejects_block_wider_than_default_minimum" {
  # A /16 is wider than the default minimum /24.
  command = plan

  variables {
    admin_cidrs = ["10.0.0.0/16"]
  }

  expect_failures = [var.admin_cidrs]
}

run "ssh_minimum_cannot_be_relaxed_below_16" {
  # The minimum itself has a floor: no way to reopen 0.0.0.0/0 through it.
  command = plan

  variables {
    admin_cidr_min_prefix_length = 0
    admin_cidrs                  = ["0.0.0.0/0"]
  }

  expect_failures = [var.admin_cidr_min_prefix_length]
}

run "ssh_rejects_ipv6" {
  # IPv4 rules: IPv6 gets a clear error here, not the provider's.
  command = plan

  variables {
    admin_cidrs = ["2001:db8::/32"]
  }

  expect_failures = [var.admin_cidrs]
}

# --- HTTPS and VPC CIDRs (envs/prod) -------------------------------------------

run "https_rejects_ipv6" {
  # ::/0 would otherwise reach the provider as an IPv4 block.
  command = plan

  variables {
    allowed_cidrs = ["::/0"]
  }

  expect_failures = [var.allowed_cidrs]
}

run "https_rejects_non_canonical_prefix" {
  # Canonical form applies to allowed_cidrs too.
  command = plan

  variables {
    allowed_cidrs = ["203.0.113.0/024"]
  }

  expect_failures = [var.allowed_cidrs]
}

run "https_rejects_empty_list" {
  # No open default, and no empty list either.
  command = plan

  variables {
    allowed_cidrs = []
  }

  expect_failures = [var.allowed_cidrs]
}

run "vpc_rejects_ipv6" {
  # vpc_cidr is IPv4.
  command = plan

  variables {
    vpc_cidr = "fd00:40::/56"
  }

  expect_failures = [var.vpc_cidr]
}

run "vpc_rejects_host_bits" {
  # vpc_cidr must be a network address.
  command = plan

  variables {
    vpc_cidr = "10.40.1.0/16"
  }

  expect_failures = [var.vpc_cidr]
}

# --- Database TLS and bucket names (envs/prod) ---------------------------------

run "db_parameters_cannot_turn_off_force_ssl" {
  # The module would override it anyway (merged last); the env says so at the variable.
  command = plan

  variables {
    db_parameters = { "rds.force_ssl" = "0" }
  }

  expect_failures = [var.db_parameters]
}

run "empty_artifacts_bucket_name_is_an_error" {
  # "" used to be replaced by the derived name without a word.
  command = plan

  variables {
    artifacts_bucket_name = ""
  }

  expect_failures = [var.artifacts_bucket_name]
}

run "empty_log_bucket_name_is_an_error" {
  # Same rule for the log bucket.
  command = plan

  variables {
    log_bucket_name = " "
  }

  expect_failures = [var.log_bucket_name]
}

run "flow_logs_need_the_log_bucket" {
  # Flow logs have nowhere to go without the log bucket.
  command = plan

  variables {
    create_log_bucket = false
    enable_flow_logs  = true
  }

  expect_failures = [var.enable_flow_logs]
}

# --- S3 naming rules (modules/s3_bucket) ---------------------------------------

run "bucket_name_too_short" {
  # 3 characters at least.
  command = plan

  module {
    source = "../../modules/s3_bucket"
  }

  variables {
    bucket_name = "ab"
  }

  expect_failures = [var.bucket_name]
}

run "bucket_name_too_long" {
  # 63 characters at most.
  command = plan

  module {
    source = "../../modules/s3_bucket"
  }

  variables {
    bucket_name = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
  }

  expect_failures = [var.bucket_name]
}

run "bucket_name_uppercase" {
  # Lowercase only.
  command = plan

  module {
    source = "../../modules/s3_bucket"
  }

  variables {
    bucket_name = "MLflow-artifacts"
  }

  expect_failures = [var.bucket_name]
}

run "bucket_name_underscore" {
  # No underscores.
  command = plan

  module {
    source = "../../modules/s3_bucket"
  }

  variables {
    bucket_name = "mlflow_artifacts"
  }

  expect_failures = [var.bucket_name]
}

run "bucket_name_starts_with_hyphen" {
  # Starts with a letter or digit.
  command = plan

  module {
    source = "../../modules/s3_bucket"
  }

  variables {
    bucket_name = "-mlflow-artifacts"
  }

  expect_failures = [var.bucket_name]
}

run "bucket_name_ends_with_dot" {
  # Ends with a letter or digit.
  command = plan

  module {
    source = "../../modules/s3_bucket"
  }

  variables {
    bucket_name = "mlflow-artifacts."
  }

  expect_failures = [var.bucket_name]
}

run "bucket_name_double_dot" {
  # No two adjacent dots.
  command = plan

  module {
    source = "../../modules/s3_bucket"
  }

  variables {
    bucket_name = "mlflow..artifacts"
  }

  expect_failures = [var.bucket_name]
}

run "bucket_name_dot_hyphen" {
  # No label starting or ending with a hyphen.
  command = plan

  module {
    source = "../../modules/s3_bucket"
  }

  variables {
    bucket_name = "mlflow.-artifacts"
  }

  expect_failures = [var.bucket_name]
}

run "bucket_name_ip_address" {
  # Not formatted as an IP address.
  command = plan

  module {
    source = "../../modules/s3_bucket"
  }

  variables {
    bucket_name = "192.168.5.4"
  }

  expect_failures = [var.bucket_name]
}

run "bucket_name_xn_prefix" {
  # Reserved prefix xn--.
  command = plan

  module {
    source = "../../modules/s3_bucket"
  }

  variables {
    bucket_name = "xn--mlflow-artifacts"
  }

  expect_failures = [var.bucket_name]
}

run "bucket_name_sthree_prefix" {
  # Reserved prefix sthree-.
  command = plan

  module {
    source = "../../modules/s3_bucket"
  }

  variables {
    bucket_name = "sthree-mlflow-artifacts"
  }

  expect_failures = [var.bucket_name]
}

run "bucket_name_amzn_demo_prefix" {
  # Reserved prefix amzn-s3-demo-.
  command = plan

  module {
    source = "../../modules/s3_bucket"
  }

  variables {
    bucket_name = "amzn-s3-demo-mlflow"
  }

  expect_failures = [var.bucket_name]
}

run "bucket_name_s3alias_suffix" {
  # Reserved suffix -s3alias (access point aliases).
  command = plan

  module {
    source = "../../modules/s3_bucket"
  }

  variables {
    bucket_name = "mlflow-artifacts-s3alias"
  }

  expect_failures = [var.bucket_name]
}

run "bucket_name_ol_s3_suffix" {
  # Reserved suffix --ol-s3 (Object Lambda aliases).
  command = plan

  module {
    source = "../../modules/s3_bucket"
  }

  variables {
    bucket_name = "mlflow-artifacts--ol-s3"
  }

  expect_failures = [var.bucket_name]
}

run "bucket_name_mrap_suffix" {
  # Reserved suffix .mrap (multi-region access points).
  command = plan

  module {
    source = "../../modules/s3_bucket"
  }

  variables {
    bucket_name = "mlflow-artifacts.mrap"
  }

  expect_failures = [var.bucket_name]
}

run "bucket_name_directory_suffix" {
  # Reserved suffix --x-s3 (directory buckets).
  command = plan

  module {
    source = "../../modules/s3_bucket"
  }

  variables {
    bucket_name = "mlflow-artifacts--x-s3"
  }

  expect_failures = [var.bucket_name]
}

run "bucket_name_table_suffix" {
  # Reserved suffix --table-s3 (table buckets).
  command = plan

  module {
    source = "../../modules/s3_bucket"
  }

  variables {
    bucket_name = "mlflow-artifacts--table-s3"
  }

  expect_failures = [var.bucket_name]
}

# --- Module guards hold without the env (modules/security_groups, network, xeon_hosts) 

run "sg_module_rejects_two_halves" {
  # The module checks on its own, whoever calls it.
  command = plan

  module {
    source = "../../modules/security_groups"
  }

  variables {
    name          = "mlops-xeon-prod"
    vpc_id        = "vpc-0123456789abcdef0"
    allowed_cidrs = ["203.0.113.0/24"]
    admin_cidrs   = ["0.0.0.0/1", "128.0.0.0/1"]
  }

  expect_failures = [var.admin_cidrs]
}

run "sg_module_rejects_ipv6" {
  # IPv6 in allowed_cidrs.
  command = plan

  module {
    source = "../../modules/security_groups"
  }

  variables {
    name          = "mlops-xeon-prod"
    vpc_id        = "vpc-0123456789abcdef0"
    allowed_cidrs = ["2001:db8::/32"]
  }

  expect_failures = [var.allowed_cidrs]
}

run "sg_module_minimum_floor" {
  # admin_cidr_min_prefix_length below 16.
  command = plan

  module {
    source = "../../modules/security_groups"
  }

  variables {
    name                         = "mlops-xeon-prod"
    vpc_id                       = "vpc-0123456789abcdef0"
    allowed_cidrs                = ["203.0.113.0/24"]
    admin_cidr_min_prefix_length = 8
  }

  expect_failures = [var.admin_cidr_min_prefix_length]
}

run "sg_module_rejects_privileged_node_exporter_port" {
  # node_exporter_port must be an unprivileged port (Ansible derives it from mlflow_port).
  command = plan

  module {
    source = "../../modules/security_groups"
  }

  variables {
    name               = "mlops-xeon-prod"
    vpc_id             = "vpc-0123456789abcdef0"
    allowed_cidrs      = ["203.0.113.0/24"]
    node_exporter_port = 22
  }

  expect_failures = [var.node_exporter_port]
}

run "network_rejects_ipv6" {
  # IPv6 vpc_cidr.
  command = plan

  module {
    source = "../../modules/network"
  }

  variables {
    name     = "mlops-xeon-prod"
    vpc_cidr = "fd00:40::/56"
  }

  expect_failures = [var.vpc_cidr]
}

run "network_rejects_oversized_vpc" {
  # AWS VPCs are /16 at the largest.
  command = plan

  module {
    source = "../../modules/network"
  }

  variables {
    name     = "mlops-xeon-prod"
    vpc_cidr = "10.0.0.0/8"
  }

  expect_failures = [var.vpc_cidr]
}

run "hosts_ssm_path_rejects_wildcard" {
  # "/*" would be every parameter again.
  command = plan

  module {
    source = "../../modules/xeon_hosts"
  }

  variables {
    name               = "x"
    ami_id             = "ami-0123456789abcdef0"
    subnet_ids         = ["subnet-aaaa"]
    security_group_ids = ["sg-x"]
    policy_json        = "{}"
    ssm_parameter_path = "/*"
  }

  expect_failures = [var.ssm_parameter_path]
}

# --- Public HTTPS is a warning, not an error -----------------------------------

run "public_https_warns" {
  # check.public_web fails: in `terraform plan` that is a warning and the plan goes on (a check
  # block never stops a plan); `terraform test` counts it as a failure, so expect_failures here.
  command = plan

  module {
    source = "../../modules/security_groups"
  }

  variables {
    name          = "mlops-xeon-prod"
    vpc_id        = "vpc-0123456789abcdef0"
    allowed_cidrs = ["0.0.0.0/0"]
  }

  expect_failures = [check.public_web]
}

run "ssh_minimum_can_be_relaxed_to_16" {
  # The minimum is a setting within its floor: /16 is accepted when asked for.
  command = plan

  variables {
    admin_cidr_min_prefix_length = 16
    admin_cidrs                  = ["10.20.0.0/16"]
  }
}

# --- The MLflow server's own database role -------------------------------------

run "mlflow_db_username_refuses_the_master_user" {
  command = plan
  variables {
    mlflow_db_username = "mlflow"
  }
  expect_failures = [var.mlflow_db_username]
}

run "mlflow_db_username_refuses_a_non_identifier" {
  command = plan
  variables {
    mlflow_db_username = "MLflow-Server"
  }
  expect_failures = [var.mlflow_db_username]
}
