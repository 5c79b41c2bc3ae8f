# The scaled layout (var.topology = "scaled", issue #16): hosts in the private subnets, reached
# only through an internet-facing Application Load Balancer in the two public subnets that
# terminates TLS (ACM) and forwards HTTPS to the nginx on each host: MLflow hosts (an autoscaling
# group, the default route) and serving hosts (an autoscaling group, /serve/*). Trainers stay a
# fixed group (DDP needs a fixed world size) in the private subnets, with a stable rendezvous name
# in a private Route 53 zone. The single layout (the default) creates none of this.

locals {
  scaled = var.topology == "scaled"

  # The created certificate is usable once validated (DNS records in route53_zone_id).
  create_certificate = local.scaled && var.certificate_arn == null
  certificate_arn    = local.scaled ? coalesce(var.certificate_arn, try(aws_acm_certificate_validation.this[0].certificate_arn, null)) : null

  # The provider's default_tags, for what it does not tag itself: instances and volumes launched by
  # an autoscaling group (through the launch template's tag specifications).
  host_tags = merge(var.tags, { Project = var.project, Environment = var.environment, ManagedBy = "terraform" })

  private_zone_name = coalesce(var.private_zone_name, "${local.name}.internal")
  rendezvous_fqdn   = "trainer-rendezvous.${local.private_zone_name}"

  # EC2 Auto Scaling launches the hosts, so its service-linked role must be able to use the data key
  # that encrypts their root volumes (AWS's documented key-policy statements for an ASG with an
  # encrypted CMK volume). Principal "*" narrowed by aws:PrincipalArn: the role may not exist yet
  # when the key is created (its first group creates it), and a key policy naming a missing
  # principal is refused.
  autoscaling_role_arn = "${local.arn_prefix}:iam::${local.account_id}:role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling"
  autoscaling_kms_statements = [for s in [
    {
      Sid       = "AutoScalingUsesDataKeyForRootVolumes"
      Effect    = "Allow"
      Principal = { AWS = "*" }
      Action    = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"]
      Resource  = "*"
      Condition = { StringEquals = { "aws:PrincipalArn" = local.autoscaling_role_arn, "kms:CallerAccount" = local.account_id } }
    },
    {
      Sid       = "AutoScalingGrantsForRootVolumes"
      Effect    = "Allow"
      Principal = { AWS = "*" }
      Action    = "kms:CreateGrant"
      Resource  = "*"
      Condition = {
        StringEquals = { "aws:PrincipalArn" = local.autoscaling_role_arn, "kms:CallerAccount" = local.account_id }
        Bool         = { "kms:GrantIsForAWSResource" = "true" }
      }
    },
  ] : s if local.scaled]

  # ALB access logs into the log bucket (SSE-S3, as ELB requires): the regional ELB account and,
  # in regions opened since August 2022, the log delivery service.
  alb_log_prefix = "alb"
  alb_log_statements = local.scaled && var.create_log_bucket ? [{
    Sid       = "AlbAccessLogs"
    Effect    = "Allow"
    Principal = { AWS = data.aws_elb_service_account.this[0].arn, Service = "logdelivery.elasticloadbalancing.amazonaws.com" }
    Action    = "s3:PutObject"
    Resource  = "${local.arn_prefix}:s3:::${local.log_bucket}/${local.alb_log_prefix}/AWSLogs/${local.account_id}/*"
  }] : []
}

data "aws_elb_service_account" "this" {
  count = local.scaled && var.create_log_bucket ? 1 : 0
}

# --- TLS certificate -------------------------------------------------------------

resource "aws_acm_certificate" "this" {
  count = local.create_certificate ? 1 : 0

  domain_name       = var.dns_name
  validation_method = "DNS"

  lifecycle {
    create_before_destroy = true
  }
}

# One name (dns_name), so one validation record; count, not for_each, because the record's name is
# known only once the certificate is requested.
resource "aws_route53_record" "certificate_validation" {
  count = local.create_certificate ? 1 : 0

  zone_id         = var.route53_zone_id
  name            = tolist(aws_acm_certificate.this[0].domain_validation_options)[0].resource_record_name
  type            = tolist(aws_acm_certificate.this[0].domain_validation_options)[0].resource_record_type
  records         = [tolist(aws_acm_certificate.this[0].domain_validation_options)[0].resource_record_value]
  ttl             = 300
  allow_overwrite = true
}

resource "aws_acm_certificate_validation" "this" {
  count = local.create_certificate ? 1 : 0

  certificate_arn         = aws_acm_certificate.this[0].arn
  validation_record_fqdns = aws_route53_record.certificate_validation[*].fqdn
}

# --- Application Load Balancer ---------------------------------------------------

resource "aws_lb" "this" {
  #checkov:skip=CKV2_AWS_28:A WAF web ACL is an account-level choice with per-request cost; alb_web_acl_arn attaches one, and every request still passes nginx's basic auth behind TLS.
  #checkov:skip=CKV2_AWS_76:No web ACL is created here (alb_web_acl_arn attaches the account's own, with its owner's rule sets), and nothing behind the ALB runs Java or Log4j (nginx, Python).
  count = local.scaled ? 1 : 0

  name                       = substr(local.name, 0, 32)
  load_balancer_type         = "application"
  internal                   = false
  subnets                    = module.network.public_subnet_ids
  security_groups            = [module.security_groups.alb_security_group_id]
  drop_invalid_header_fields = true
  enable_deletion_protection = var.alb_deletion_protection
  idle_timeout               = var.alb_idle_timeout

  dynamic "access_logs" {
    for_each = var.create_log_bucket ? [1] : []
    content {
      bucket  = module.logs[0].bucket_id
      prefix  = local.alb_log_prefix
      enabled = true
    }
  }
}

resource "aws_wafv2_web_acl_association" "alb" {
  count = local.scaled && var.alb_web_acl_arn != null ? 1 : 0

  resource_arn = aws_lb.this[0].arn
  web_acl_arn  = var.alb_web_acl_arn
}

# HTTPS to each host's nginx (its own certificate; the ALB does not verify target certificates).
resource "aws_lb_target_group" "mlflow" {
  count = local.scaled ? 1 : 0

  name                 = "${substr(local.name, 0, 28)}-ml"
  port                 = 443
  protocol             = "HTTPS"
  target_type          = "instance"
  vpc_id               = module.network.vpc_id
  deregistration_delay = 60

  health_check {
    protocol            = "HTTPS"
    path                = "/health"
    matcher             = "200"
    interval            = 15
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }
}

resource "aws_lb_target_group" "serving" {
  count = local.scaled ? 1 : 0

  name                 = "${substr(local.name, 0, 28)}-sv"
  port                 = 443
  protocol             = "HTTPS"
  target_type          = "instance"
  vpc_id               = module.network.vpc_id
  deregistration_delay = 60

  health_check {
    protocol            = "HTTPS"
    path                = var.serving_health_check_path
    matcher             = "200"
    interval            = 15
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }
}

# TLS only: no port 80 listener (the load balancer's group does not even open 80).
resource "aws_lb_listener" "https" {
  count = local.scaled ? 1 : 0

  load_balancer_arn = aws_lb.this[0].arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = var.alb_ssl_policy
  certificate_arn   = local.certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.mlflow[0].arn
  }
}

resource "aws_lb_listener_rule" "serving" {
  count = local.scaled ? 1 : 0

  listener_arn = aws_lb_listener.https[0].arn
  priority     = 10

  action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.serving[0].arn
  }

  condition {
    path_pattern {
      values = ["/serve/*"]
    }
  }
}

# --- Serving hosts: their own autoscaling group behind the same ALB ------------------

module "serving" {
  source = "../../modules/xeon_hosts"
  count  = local.scaled ? 1 : 0

  name                          = "${local.name}-serving"
  group                         = "serving"
  host_tags                     = local.host_tags
  create_autoscaling_group      = true
  asg_min_size                  = var.serving_min_size
  asg_max_size                  = var.serving_max_size
  asg_desired_capacity          = var.serving_desired_capacity
  asg_health_check_type         = var.asg_health_check_type
  target_group_arns             = [aws_lb_target_group.serving[0].arn]
  instance_type                 = var.serving_instance_type
  ami_id                        = local.ami_id
  subnet_ids                    = module.network.private_subnet_ids
  security_group_ids            = [module.security_groups.serving_security_group_id]
  key_name                      = var.key_name
  root_volume_size              = var.root_volume_size
  root_volume_kms_key_arn       = local.data_kms_key_arn
  enable_ssm                    = var.enable_ssm
  ssm_parameter_path            = "/${var.project}/${var.environment}"
  enable_detailed_monitoring    = var.enable_detailed_monitoring
  create_eip                    = false
  asg_health_check_grace_period = 600
  # Serving loads models through MLflow's nginx (proxied artifacts) and reaches its monitoring
  # database with a password file: its role needs no AWS permission beyond the SSM policy.
  policy_json = null
}

# --- Trainers' rendezvous: a private DNS name, stable across replacements ------------

resource "aws_route53_zone" "private" {
  #checkov:skip=CKV2_AWS_38:DNSSEC signing applies to public zones; this zone is private to the VPC.
  #checkov:skip=CKV2_AWS_39:Query logging of a private zone needs a Route 53 Resolver query log config; the VPC flow logs already record the traffic.
  count = local.scaled ? 1 : 0

  name    = local.private_zone_name
  comment = "${local.name}: private names (trainer rendezvous)"

  vpc {
    vpc_id = module.network.vpc_id
  }
}

resource "aws_route53_record" "rendezvous" {
  count = local.scaled && var.trainer_count > 0 ? 1 : 0

  zone_id = aws_route53_zone.private[0].zone_id
  name    = local.rendezvous_fqdn
  type    = "A"
  ttl     = 60
  records = [module.trainers[0].private_ips[0]]
}
