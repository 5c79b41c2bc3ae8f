resource "aws_iam_role" "this" {
  name_prefix = "${substr(var.name, 0, 32)}-"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "ec2.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  })

  tags = var.tags
}

resource "aws_iam_role_policy" "this" {
  name   = "${var.name}-least-privilege"
  role   = aws_iam_role.this.id
  policy = var.policy_json
}

# SSM Session Manager and Run Command without AmazonSSMManagedInstanceCore, whose
# ssm:GetParameter(s) on "*" would let a host read every parameter in the account: the agent's
# registration and message channels (these actions take no narrower resource than the instance or
# "*"), and parameters only under ssm_parameter_path.
data "aws_partition" "current" {}
data "aws_region" "current" {}
data "aws_caller_identity" "current" {}

locals {
  arn_prefix = "arn:${data.aws_partition.current.partition}"
  region     = data.aws_region.current.name
  account_id = data.aws_caller_identity.current.account_id
}

resource "aws_iam_role_policy" "ssm" {
  count = var.enable_ssm ? 1 : 0

  name = "${var.name}-ssm"
  role = aws_iam_role.this.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "SsmAgentRegistration"
        Effect   = "Allow"
        Action   = ["ssm:UpdateInstanceInformation", "ssm:ListInstanceAssociations"]
        Resource = ["${local.arn_prefix}:ec2:${local.region}:${local.account_id}:instance/*"]
      },
      {
        Sid      = "SsmSessionChannels"
        Effect   = "Allow"
        Action   = ["ssmmessages:CreateControlChannel", "ssmmessages:CreateDataChannel", "ssmmessages:OpenControlChannel", "ssmmessages:OpenDataChannel"]
        Resource = ["*"]
      },
      {
        Sid      = "SsmRunCommandMessages"
        Effect   = "Allow"
        Action   = ["ec2messages:AcknowledgeMessage", "ec2messages:DeleteMessage", "ec2messages:FailMessage", "ec2messages:GetEndpoint", "ec2messages:GetMessages", "ec2messages:SendReply"]
        Resource = ["*"]
      },
      {
        Sid      = "ReadPlatformParameters"
        Effect   = "Allow"
        Action   = ["ssm:GetParameter", "ssm:GetParameters", "ssm:GetParametersByPath"]
        Resource = ["${local.arn_prefix}:ssm:${local.region}:${local.account_id}:parameter${var.ssm_parameter_path}/*"]
      },
    ]
  })
}

resource "aws_iam_instance_profile" "this" {
  name_prefix = "${substr(var.name, 0, 32)}-"
  role        = aws_iam_role.this.name

  tags = var.tags
}

resource "aws_instance" "this" {
  count = var.instance_count

  ami                    = var.ami_id
  instance_type          = var.instance_type
  subnet_id              = var.subnet_ids[count.index % length(var.subnet_ids)]
  vpc_security_group_ids = var.security_group_ids
  iam_instance_profile   = aws_iam_instance_profile.this.name
  key_name               = var.key_name
  ebs_optimized          = true
  monitoring             = var.enable_detailed_monitoring

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  root_block_device {
    volume_type           = "gp3"
    volume_size           = var.root_volume_size
    encrypted             = true
    kms_key_id            = var.root_volume_kms_key_arn
    delete_on_termination = true
  }

  tags        = merge(var.tags, { Name = var.instance_count > 1 ? "${var.name}-${count.index}" : var.name })
  volume_tags = merge(var.tags, { Name = var.instance_count > 1 ? "${var.name}-${count.index}" : var.name })

  lifecycle {
    # A newer Debian AMI must not replace a running host; roll hosts deliberately.
    ignore_changes = [ami]
  }
}

resource "aws_eip" "this" {
  count = var.create_eip ? var.instance_count : 0

  domain   = "vpc"
  instance = aws_instance.this[count.index].id

  tags = merge(var.tags, { Name = var.instance_count > 1 ? "${var.name}-${count.index}" : var.name })
}
