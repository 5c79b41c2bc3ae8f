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
  count = var.policy_json != null ? 1 : 0

  name   = "${var.name}-least-privilege"
  role   = aws_iam_role.this.id
  policy = var.policy_json
}

moved {
  from = aws_iam_role_policy.this
  to   = aws_iam_role_policy.this[0]
}

# SSM Session Manager and Run Command without AmazonSSMManagedInstanceCore, whose
# ssm:GetParameter(s) on "*" would let a host read every parameter in the account: the agent's
# registration and message channels (these actions take no narrower resource than the instance or
# "*"), and parameters only under ssm_parameter_path.
data "aws_partition" "current" {}
data "aws_region" "current" {}
data "aws_caller_identity" "current" {}

locals {
  # The inventory selects hosts by this tag (amazon.aws.aws_ec2 dynamic inventory for the
  # autoscaling groups); set on fixed instances and through the launch template alike.
  group_tags = var.group != null ? { mlops_group = var.group } : {}

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
  count = var.create_autoscaling_group ? 0 : var.instance_count

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

  tags        = merge(var.tags, local.group_tags, { Name = var.instance_count > 1 ? "${var.name}-${count.index}" : var.name })
  volume_tags = merge(var.tags, local.group_tags, { Name = var.instance_count > 1 ? "${var.name}-${count.index}" : var.name })

  lifecycle {
    # A newer Debian AMI must not replace a running host; roll hosts deliberately.
    ignore_changes = [ami]
  }
}

resource "aws_eip" "this" {
  count = var.create_eip && !var.create_autoscaling_group ? var.instance_count : 0

  domain   = "vpc"
  instance = aws_instance.this[count.index].id

  tags = merge(var.tags, { Name = var.instance_count > 1 ? "${var.name}-${count.index}" : var.name })
}

# --- Autoscaling group (create_autoscaling_group): the same host from a launch template ----------
# Same hardening as the fixed instances: Intel instance_type (validated), IMDSv2 with hop limit 1,
# an encrypted gp3 root on root_volume_kms_key_arn, the instance profile above, no public address
# (the group lives in private subnets behind the load balancer), detailed monitoring.

resource "aws_launch_template" "this" {
  count = var.create_autoscaling_group ? 1 : 0

  name_prefix            = "${substr(var.name, 0, 32)}-"
  description            = "${var.name}: Intel Xeon host, IMDSv2, encrypted root, no public address"
  image_id               = var.ami_id
  instance_type          = var.instance_type
  key_name               = var.key_name
  ebs_optimized          = true
  update_default_version = true
  user_data              = var.user_data_base64

  iam_instance_profile {
    arn = aws_iam_instance_profile.this.arn
  }

  network_interfaces {
    associate_public_ip_address = false
    delete_on_termination       = true
    security_groups             = var.security_group_ids
  }

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  block_device_mappings {
    device_name = var.root_device_name

    ebs {
      volume_type           = "gp3"
      volume_size           = var.root_volume_size
      encrypted             = true
      kms_key_id            = var.root_volume_kms_key_arn
      delete_on_termination = true
    }
  }

  monitoring {
    enabled = var.enable_detailed_monitoring
  }

  tag_specifications {
    resource_type = "instance"
    tags          = merge(var.host_tags, var.tags, local.group_tags, { Name = var.name })
  }

  tag_specifications {
    resource_type = "volume"
    tags          = merge(var.host_tags, var.tags, local.group_tags, { Name = var.name })
  }

  tags = var.tags
}

resource "aws_autoscaling_group" "this" {
  count = var.create_autoscaling_group ? 1 : 0

  name_prefix               = "${substr(var.name, 0, 32)}-"
  vpc_zone_identifier       = var.subnet_ids
  min_size                  = var.asg_min_size
  max_size                  = var.asg_max_size
  desired_capacity          = var.asg_desired_capacity
  target_group_arns         = var.target_group_arns
  health_check_type         = var.asg_health_check_type
  health_check_grace_period = var.asg_health_check_grace_period

  launch_template {
    id      = aws_launch_template.this[0].id
    version = aws_launch_template.this[0].latest_version
  }

  # The launch template tags the instances; these make the group itself findable.
  dynamic "tag" {
    for_each = merge(var.tags, local.group_tags, { Name = var.name })
    content {
      key                 = tag.key
      value               = tag.value
      propagate_at_launch = false
    }
  }
}
