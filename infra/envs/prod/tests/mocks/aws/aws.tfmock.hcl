# Shared defaults of the mocked AWS provider for every test file in infra/envs/prod/tests, loaded
# with `mock_provider "aws" { source = "./tests/mocks/aws" }` (the path is relative to
# infra/envs/prod, the directory `terraform test` runs in). A mock_resource or mock_data block
# written inline in a test file's mock_provider takes precedence over the one here for its type.
# mock_resource defaults fill computed attributes at apply; in plan runs those stay unknown.
# Values assume account 123456789012 in eu-west-1; the assertions compare against them.

# --- Resources ---------------------------------------------------------------------------------

mock_resource "aws_iam_role" {
  defaults = {
    arn = "arn:aws:iam::123456789012:role/mock-role"
  }
}

mock_resource "aws_iam_instance_profile" {
  defaults = {
    arn = "arn:aws:iam::123456789012:instance-profile/mock-profile"
  }
}

# The MLflow artifact bucket's ARN, which the host policies are scoped to; test files override the
# log bucket's ARN (module.logs[0].aws_s3_bucket.this) where they tell the two apart.
mock_resource "aws_s3_bucket" {
  defaults = {
    arn = "arn:aws:s3:::mlops-xeon-prod-mlflow-artifacts-eu-west-1"
  }
}

# The scaled layout's load balancer: dns_name and zone_id feed the alias record.
mock_resource "aws_lb" {
  defaults = {
    arn      = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/mlops-xeon-prod/0123456789abcdef"
    dns_name = "mlops-xeon-prod-123456.eu-west-1.elb.amazonaws.com"
    zone_id  = "Z32O12XQLNTSW2"
  }
}

mock_resource "aws_lb_listener" {
  defaults = {
    arn = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:listener/app/mlops-xeon-prod/0123456789abcdef/0123456789abcdef"
  }
}

# topology.tf builds the DNS validation record from the first domain_validation_options entry, so
# the certificate needs one; the validation hands back the certificate's own ARN.
mock_resource "aws_acm_certificate" {
  defaults = {
    arn = "arn:aws:acm:eu-west-1:123456789012:certificate/00000000-0000-0000-0000-00000000c0de"
    domain_validation_options = [{
      domain_name           = "mlflow.example.com"
      resource_record_name  = "_abc.mlflow.example.com."
      resource_record_type  = "CNAME"
      resource_record_value = "_xyz.acm-validations.aws."
    }]
  }
}

mock_resource "aws_acm_certificate_validation" {
  defaults = {
    certificate_arn = "arn:aws:acm:eu-west-1:123456789012:certificate/00000000-0000-0000-0000-00000000c0de"
  }
}

# The single layout's assertions expect the hosts' Elastic IP, private address and (without an
# EIP) no public address to be exactly these.
mock_resource "aws_eip" {
  defaults = {
    public_ip = "198.51.100.10"
  }
}

mock_resource "aws_instance" {
  defaults = {
    private_ip = "10.40.128.10"
    public_ip  = ""
  }
}

mock_resource "aws_launch_template" {
  defaults = {
    id = "lt-0123456789abcdef0"
  }
}

# RDS manages the master password: its secret's ARN reaches output.db_password_secret_arn.
mock_resource "aws_db_instance" {
  defaults = {
    master_user_secret = [{
      secret_arn    = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:rds!db-mock-AbCdEf"
      kms_key_id    = "arn:aws:kms:eu-west-1:123456789012:key/mock"
      secret_status = "active"
    }]
  }
}

# --- Data sources ------------------------------------------------------------------------------

# Valid (empty) policy JSON, so that whatever decodes or merges a policy document still parses.
mock_data "aws_iam_policy_document" {
  defaults = {
    json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}"
  }
}

mock_data "aws_availability_zones" {
  defaults = {
    names = ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
  }
}

mock_data "aws_caller_identity" {
  defaults = {
    account_id = "123456789012"
  }
}

mock_data "aws_partition" {
  defaults = {
    partition = "aws"
  }
}

mock_data "aws_region" {
  defaults = {
    name = "eu-west-1"
  }
}

# Elastic Load Balancing's account in eu-west-1, granted write access for the ALB's access logs.
mock_data "aws_elb_service_account" {
  defaults = {
    arn = "arn:aws:iam::156460612806:root"
  }
}
