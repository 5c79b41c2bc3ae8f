# The two layouts (variable topology, topology.tf): the scaled one's load balancer, private hosts
# and autoscaling groups, and the refusals of its variables. Mocked AWS, no network.

mock_provider "aws" {
  # Shared defaults: tests/mocks/aws/aws.tfmock.hcl (path relative to infra/envs/prod).
  source = "./tests/mocks/aws"
}

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
  target = aws_route53_record.mlflow[0]
  values = { fqdn = "mlflow.example.com" }
}

override_resource {
  target = aws_lb_target_group.mlflow[0]
  values = { arn = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/mlops-xeon-prod-ml/1111111111111111" }
}

override_resource {
  target = aws_lb_target_group.serving[0]
  values = { arn = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/mlops-xeon-prod-sv/2222222222222222" }
}

variables {
  allowed_cidrs   = ["203.0.113.0/24"]
  ami_id          = "ami-0123456789abcdef0"
  topology        = "scaled"
  dns_name        = "mlflow.example.com"
  route53_zone_id = "Z0123456789ABCDEFGHIJ"
  trainer_count   = 2
}

# --- The scaled layout ---------------------------------------------------------

# One apply of the scaled layout's defaults, three concerns: the load balancer (TLS only, routes,
# health checks), the hosts (private, hardened, tagged), the trainers' rendezvous name.
run "scaled_layout" {
  command = apply

  assert {
    condition     = length(aws_lb.this) == 1 && !aws_lb.this[0].internal && aws_lb.this[0].drop_invalid_header_fields
    error_message = "The scaled layout has one internet-facing ALB that drops invalid headers."
  }

  assert {
    condition     = toset(aws_lb.this[0].subnets) == toset(module.network.public_subnet_ids) && length(module.network.public_subnet_ids) == 2
    error_message = "The ALB spans the two public subnets (two AZs)."
  }

  assert {
    condition     = length(aws_lb_listener.https) == 1 && aws_lb_listener.https[0].port == 443 && aws_lb_listener.https[0].protocol == "HTTPS"
    error_message = "The only listener is HTTPS on 443."
  }

  assert {
    condition     = startswith(aws_lb_listener.https[0].ssl_policy, "ELBSecurityPolicy-TLS13-1-2")
    error_message = "The listener allows TLS 1.2 and 1.3 only."
  }

  assert {
    condition     = aws_lb_listener.https[0].certificate_arn == aws_acm_certificate_validation.this[0].certificate_arn && aws_acm_certificate.this[0].domain_name == "mlflow.example.com"
    error_message = "Without certificate_arn, the listener uses an ACM certificate for dns_name, once validated."
  }

  assert {
    condition     = aws_lb_listener.https[0].default_action[0].type == "forward" && aws_lb_listener.https[0].default_action[0].target_group_arn == aws_lb_target_group.mlflow[0].arn
    error_message = "By default the listener forwards to the MLflow hosts."
  }

  assert {
    condition     = flatten([for c in aws_lb_listener_rule.serving[0].condition : [for p in c.path_pattern : tolist(p.values)]]) == ["/serve/*"] && aws_lb_listener_rule.serving[0].action[0].target_group_arn == aws_lb_target_group.serving[0].arn
    error_message = "/serve/* goes to the serving hosts."
  }

  assert {
    condition = alltrue([for tg in [aws_lb_target_group.mlflow[0], aws_lb_target_group.serving[0]] :
    tg.protocol == "HTTPS" && tg.port == 443 && tg.health_check[0].protocol == "HTTPS"])
    error_message = "Both target groups speak HTTPS to the hosts' nginx, health checks too."
  }

  assert {
    condition     = aws_lb_target_group.mlflow[0].health_check[0].path == "/health" && aws_lb_target_group.serving[0].health_check[0].path == "/health"
    error_message = "Health checks: /health on MLflow's nginx and on the serving hosts' nginx (no login; /serve/* needs one)."
  }

  assert {
    condition     = aws_lb.this[0].access_logs[0].enabled && aws_lb.this[0].access_logs[0].bucket == "mlops-xeon-prod-logs-eu-west-1"
    error_message = "ALB access logs go to the log bucket."
  }

  assert {
    condition = anytrue([for s in jsondecode(module.logs[0].bucket_policy).Statement :
    s.Sid == "AlbAccessLogs" && s.Resource == "arn:aws:s3:::mlops-xeon-prod-logs-eu-west-1/alb/AWSLogs/123456789012/*"])
    error_message = "The log bucket lets the ELB log delivery write under alb/AWSLogs/<account>/ only."
  }

  assert {
    condition     = aws_route53_record.mlflow[0].alias[0].name == aws_lb.this[0].dns_name && aws_route53_record.mlflow[0].records == null
    error_message = "The public DNS record is an alias to the ALB, not an address."
  }

  assert {
    condition     = output.mlflow_public_hostname == "mlflow.example.com" && output.alb_dns_name == aws_lb.this[0].dns_name
    error_message = "The public hostname is the DNS record in front of the ALB."
  }

  # --- Hosts: private, hardened, tagged ---

  assert {
    condition = alltrue([for lt in [module.mlflow.launch_template, module.serving[0].launch_template] :
    lt.associate_public_ip_address == "false"])
    error_message = "MLflow and serving hosts come from launch templates without public addresses."
  }

  assert {
    condition = alltrue([for ids in [module.mlflow.subnet_ids, module.serving[0].subnet_ids, module.trainers[0].subnet_ids] :
    length(ids) > 0 && alltrue([for id in ids : contains(module.network.private_subnet_ids, id)])])
    error_message = "Both autoscaling groups and the trainers live in the private subnets."
  }

  assert {
    condition     = length(module.mlflow.instance_ids) == 0 && length(module.mlflow.public_ips) == 0 && length(output.trainer_public_ips) == 0
    error_message = "No Elastic IP, no public address and no fixed MLflow instance in the scaled layout."
  }

  assert {
    condition     = length(module.network.nat_public_ips) == 1 && keys(module.network.vpc_endpoint_ids) == ["s3"]
    error_message = "private_egress = nat_gateway (default): one NAT gateway and the S3 gateway endpoint, no interface endpoints."
  }

  assert {
    condition = alltrue([for lt in [module.mlflow.launch_template, module.serving[0].launch_template] :
      lt.http_tokens == "required" && lt.http_put_response_hop_limit == 1 && lt.root_encrypted == "true"
    && lt.root_volume_type == "gp3" && lt.root_kms_key_id == output.data_kms_key_arn])
    error_message = "Launch templates keep IMDSv2 (hop limit 1) and an encrypted gp3 root on the data key."
  }

  assert {
    condition = (module.mlflow.launch_template.instance_tags["mlops_group"] == "mlflow"
      && module.serving[0].launch_template.instance_tags["mlops_group"] == "serving"
    && alltrue([for t in module.trainers[0].instance_tags : t["mlops_group"] == "trainers"]))
    error_message = "Every host carries its group tag (mlops_group), which the dynamic inventory selects by."
  }

  assert {
    condition     = output.mlflow_instance_id == null && output.mlflow_public_ip == null && output.mlflow_private_ip == null
    error_message = "Per-host outputs of the single layout are null, not an index error, in the scaled one."
  }

  assert {
    condition     = module.serving[0].role_policy == null && module.serving[0].ssm_policy != null
    error_message = "Serving hosts get no AWS permission beyond the scoped SSM policy."
  }

  assert {
    condition     = contains([for s in jsondecode(module.mlflow.role_policy).Statement : s.Action], ["secretsmanager:GetSecretValue"])
    error_message = "The MLflow hosts' role (now behind a launch template) keeps the database secret statement (local.secret_statements)."
  }

  assert {
    condition = anytrue([for s in jsondecode(aws_kms_key.data[0].policy).Statement :
    s.Sid == "AutoScalingGrantsForRootVolumes" && try(s.Condition.Bool["kms:GrantIsForAWSResource"], "") == "true"])
    error_message = "EC2 Auto Scaling may use the data key for the hosts' encrypted root volumes (grants for AWS resources only)."
  }

  # --- Trainers' rendezvous ---

  assert {
    condition     = aws_route53_zone.private[0].name == "mlops-xeon-prod.internal" && one(aws_route53_zone.private[0].vpc).vpc_id == module.network.vpc_id
    error_message = "A private zone of the VPC holds the rendezvous name."
  }

  assert {
    condition     = aws_route53_record.rendezvous[0].records == toset([module.trainers[0].private_ips[0]]) && output.trainer_rendezvous_host == "trainer-rendezvous.mlops-xeon-prod.internal"
    error_message = "trainer-rendezvous.<zone> points at the first trainer; the output hands Ansible the name."
  }
}

run "scaled_asg_sizes_from_variables" {
  command = plan

  variables {
    mlflow_min_size          = 3
    mlflow_max_size          = 6
    mlflow_desired_capacity  = 4
    serving_min_size         = 0
    serving_max_size         = 5
    serving_desired_capacity = 1
  }

  assert {
    condition     = module.mlflow.autoscaling_group.min_size == 3 && module.mlflow.autoscaling_group.max_size == 6 && module.mlflow.autoscaling_group.desired_capacity == 4
    error_message = "The MLflow group's sizes come from mlflow_min_size/max_size/desired_capacity."
  }

  assert {
    condition     = module.serving[0].autoscaling_group.min_size == 0 && module.serving[0].autoscaling_group.max_size == 5 && module.serving[0].autoscaling_group.desired_capacity == 1
    error_message = "The serving group's sizes come from serving_min_size/max_size/desired_capacity."
  }

  assert {
    condition = (module.mlflow.autoscaling_group.target_group_arns == toset([aws_lb_target_group.mlflow[0].arn])
    && module.serving[0].autoscaling_group.target_group_arns == toset([aws_lb_target_group.serving[0].arn]))
    error_message = "Each group registers in its own target group."
  }

  assert {
    condition     = module.mlflow.autoscaling_group.health_check_type == "EC2"
    error_message = "The default health check type is EC2 (hosts are provisioned by Ansible after launch)."
  }
}

run "scaled_vpc_endpoints_instead_of_nat" {
  command = plan

  variables {
    private_egress  = "vpc_endpoints"
    certificate_arn = "arn:aws:acm:eu-west-1:123456789012:certificate/11111111-2222-3333-4444-555555555555"
  }

  assert {
    condition     = length(module.network.nat_public_ips) == 0
    error_message = "private_egress = vpc_endpoints: no NAT gateway."
  }

  assert {
    condition     = length(aws_acm_certificate.this) == 0 && aws_lb_listener.https[0].certificate_arn == "arn:aws:acm:eu-west-1:123456789012:certificate/11111111-2222-3333-4444-555555555555"
    error_message = "A given certificate_arn is used as is; none is created."
  }
}

run "single_layout_unchanged" {
  command = apply

  variables {
    topology = "single"
  }

  assert {
    condition     = length(aws_lb.this) == 0 && length(module.serving) == 0 && length(aws_route53_zone.private) == 0 && length(module.network.nat_public_ips) == 0 && module.network.vpc_endpoint_ids == {}
    error_message = "The single layout creates no ALB, serving group, private zone, NAT gateway or endpoint."
  }

  assert {
    condition     = length(module.mlflow.instance_ids) == 1 && module.mlflow.public_ips == ["198.51.100.10"] && module.mlflow.autoscaling_group == null
    error_message = "The single layout keeps one MLflow instance with an Elastic IP."
  }

  assert {
    condition     = alltrue([for id in module.mlflow.subnet_ids : contains(module.network.public_subnet_ids, id)])
    error_message = "The single host stays in a public subnet."
  }

  assert {
    condition     = output.mlflow_instance_id != null && output.mlflow_public_ip == "198.51.100.10" && output.mlflow_private_ip == "10.40.128.10" && output.trainer_rendezvous_host == "10.40.128.10"
    error_message = "The single layout's outputs keep their names and values (rendezvous: the first trainer's private IP)."
  }

  assert {
    condition     = aws_route53_record.mlflow[0].records == toset(["198.51.100.10"]) && length(aws_route53_record.mlflow[0].alias) == 0
    error_message = "The single layout's DNS record is the Elastic IP."
  }
}

# --- The modules in scaled mode, called directly ------------------------------------

run "security_groups_behind_the_load_balancer" {
  command = apply

  module {
    source = "../../modules/security_groups"
  }

  variables {
    name                 = "t"
    vpc_id               = "vpc-0123456789abcdef0"
    allowed_cidrs        = ["203.0.113.0/24"]
    enable_load_balancer = true
    allow_nat_to_alb     = true
    nat_public_ips       = ["198.51.100.99"]
  }

  assert {
    condition     = aws_security_group_rule.alb_https_in[0].from_port == 443 && aws_security_group_rule.alb_https_in[0].to_port == 443 && aws_security_group_rule.alb_https_in[0].cidr_blocks == tolist(["203.0.113.0/24"])
    error_message = "allowed_cidrs reach the ALB on 443 only."
  }

  assert {
    condition     = length(aws_security_group_rule.mlflow_web_in) == 0 && length(aws_security_group_rule.ssh_in) == 0 && keys(aws_security_group_rule.mlflow_web_from_trainers) == ["https"]
    error_message = "No CIDR reaches the hosts' nginx, no SSH, no port 80 behind the ALB."
  }

  assert {
    condition = alltrue([for k in ["mlflow", "serving"] :
      aws_security_group_rule.hosts_https_from_alb[k].source_security_group_id == aws_security_group.alb[0].id
    && aws_security_group_rule.hosts_https_from_alb[k].from_port == 443 && aws_security_group_rule.hosts_https_from_alb[k].to_port == 443])
    error_message = "MLflow and serving hosts take HTTPS from the ALB's group."
  }

  assert {
    condition = alltrue([for r in values(aws_security_group_rule.exporters_from_mlflow) :
    r.source_security_group_id == aws_security_group.mlflow.id && r.cidr_blocks == null]) && length(aws_security_group_rule.exporters_from_mlflow) == 3
    error_message = "Node exporters and the serving metrics port answer the MLflow group only, never a CIDR."
  }

  assert {
    condition = alltrue([for r in concat(values(aws_security_group_rule.alertmanager_cluster_in), values(aws_security_group_rule.alertmanager_cluster_out)) :
      r.self && r.security_group_id == aws_security_group.mlflow.id && r.from_port == 9094 && r.to_port == 9094 && r.cidr_blocks == null
    ]) && keys(aws_security_group_rule.alertmanager_cluster_in) == ["tcp", "udp"] && keys(aws_security_group_rule.alertmanager_cluster_out) == ["tcp", "udp"]
    error_message = "The MLflow hosts' Alertmanagers gossip on 9094, TCP and UDP, within the MLflow group only, never a CIDR."
  }

  assert {
    condition     = aws_security_group_rule.alb_https_from_nat[0].cidr_blocks == tolist(["198.51.100.99/32"])
    error_message = "The NAT gateway's own address (a /32) may reach the ALB."
  }

  assert {
    condition     = contains(keys(aws_security_group_rule.db_in), "serving") && contains(keys(aws_security_group_rule.web_out), "serving-https")
    error_message = "Serving hosts reach the database and HTTPS out."
  }
}

run "network_private_egress_nat" {
  command = apply

  module {
    source = "../../modules/network"
  }

  variables {
    name           = "t"
    azs            = ["eu-west-1a", "eu-west-1b"]
    private_egress = "nat_gateway"
  }

  assert {
    condition     = aws_route.private_nat[0].destination_cidr_block == "0.0.0.0/0" && aws_route.private_nat[0].nat_gateway_id == aws_nat_gateway.this[0].id && aws_nat_gateway.this[0].subnet_id == aws_subnet.public[0].id
    error_message = "The private subnets route out through a NAT gateway in a public subnet."
  }

  assert {
    condition     = aws_vpc_endpoint.s3[0].vpc_endpoint_type == "Gateway" && length(aws_vpc_endpoint.interface) == 0
    error_message = "The S3 gateway endpoint comes along; no interface endpoints."
  }
}

run "network_private_egress_endpoints" {
  command = apply

  module {
    source = "../../modules/network"
  }

  variables {
    name           = "t"
    azs            = ["eu-west-1a", "eu-west-1b"]
    private_egress = "vpc_endpoints"
  }

  assert {
    condition     = length(aws_nat_gateway.this) == 0 && length(aws_route.private_nat) == 0
    error_message = "vpc_endpoints: no NAT gateway, no route to the internet."
  }

  assert {
    condition     = toset(keys(aws_vpc_endpoint.interface)) == toset(["secretsmanager", "kms", "ssm", "ssmmessages", "ec2messages", "sts", "logs"]) && aws_vpc_endpoint.s3[0].vpc_endpoint_type == "Gateway"
    error_message = "Interface endpoints for Secrets Manager, KMS, SSM (and its channels), STS, Logs; a gateway endpoint for S3."
  }

  assert {
    condition     = alltrue([for e in aws_vpc_endpoint.interface : e.private_dns_enabled && e.vpc_endpoint_type == "Interface"])
    error_message = "Interface endpoints answer the SDKs' default names (private DNS)."
  }

  assert {
    condition     = aws_vpc_security_group_ingress_rule.endpoints_https[0].cidr_ipv4 == "10.40.0.0/16" && aws_vpc_security_group_ingress_rule.endpoints_https[0].from_port == 443
    error_message = "The endpoints take HTTPS from inside the VPC only."
  }
}

# --- Refusals (expect_failures) ---------------------------------------------------

run "refuses_unknown_topology" {
  command = plan
  variables {
    topology = "cluster"
  }
  expect_failures = [var.topology]
}

run "refuses_scaled_in_one_az" {
  command = plan
  variables {
    azs = ["eu-west-1a", "eu-west-1a"]
  }
  expect_failures = [var.topology]
}

run "refuses_scaled_with_one_existing_subnet_pair" {
  command = plan
  variables {
    create_vpc         = false
    vpc_id             = "vpc-0123456789abcdef0"
    public_subnet_ids  = ["subnet-0aaaaaaaaaaaaaaa1"]
    private_subnet_ids = ["subnet-0bbbbbbbbbbbbbbb1"]
  }
  expect_failures = [var.topology]
}

run "refuses_scaled_without_certificate_or_dns" {
  command = plan
  variables {
    dns_name        = null
    route53_zone_id = null
  }
  expect_failures = [var.topology]
}

run "refuses_scaled_with_ssh" {
  command = plan
  variables {
    admin_cidrs = ["198.51.100.0/24"]
  }
  expect_failures = [var.topology]
}

run "refuses_mlflow_min_above_max" {
  command = plan
  variables {
    mlflow_min_size         = 4
    mlflow_max_size         = 2
    mlflow_desired_capacity = 2
  }
  expect_failures = [var.mlflow_max_size]
}

run "refuses_mlflow_desired_outside_bounds" {
  command = plan
  variables {
    mlflow_desired_capacity = 9
  }
  expect_failures = [var.mlflow_desired_capacity]
}

run "refuses_mlflow_group_of_zero" {
  command = plan
  variables {
    mlflow_min_size = 0
  }
  expect_failures = [var.mlflow_min_size]
}

run "refuses_serving_min_above_max" {
  command = plan
  variables {
    serving_min_size         = 3
    serving_max_size         = 2
    serving_desired_capacity = 3
  }
  expect_failures = [var.serving_max_size]
}

run "refuses_amd_serving_hosts" {
  command = plan
  variables {
    serving_instance_type = "c7a.xlarge"
  }
  expect_failures = [var.serving_instance_type]
}

run "refuses_unknown_private_egress" {
  command = plan
  variables {
    private_egress = "internet_gateway"
  }
  expect_failures = [var.private_egress]
}

run "refuses_tls_1_0_policy" {
  command = plan
  variables {
    alb_ssl_policy = "ELBSecurityPolicy-2016-08"
  }
  expect_failures = [var.alb_ssl_policy]
}

run "refuses_malformed_certificate_arn" {
  command = plan
  variables {
    certificate_arn = "arn:aws:iam::123456789012:server-certificate/mlflow"
  }
  expect_failures = [var.certificate_arn]
}

run "refuses_elb_health_check_type_typo" {
  command = plan
  variables {
    asg_health_check_type = "ALB"
  }
  expect_failures = [var.asg_health_check_type]
}
