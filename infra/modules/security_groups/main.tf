locals {
  web_ports = { https = 443, http = 80 }

  # enable_load_balancer (the scaled layout): the hosts take HTTPS from the load balancer's group
  # only, nothing from a CIDR; serving hosts get a group of their own.
  lb = var.enable_load_balancer
  # Groups whose hosts talk to MLflow, the database and the outside (packages, AWS APIs).
  host_groups = merge(
    { mlflow = aws_security_group.mlflow.id, trainer = aws_security_group.trainer.id },
    local.lb ? { serving = aws_security_group.serving[0].id } : {},
  )

  # A canonical IPv4 CIDR: four decimal octets without leading zeros, a prefix 0-32 without
  # leading zeros ("0.0.0.0/00" and "010.0.0.0/8" are refused although Go's parser takes them).
  ipv4_cidr_regex = "^((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])/(3[0-2]|[12]?[0-9])$"
}

# A deliberately public endpoint is allowed, but the plan says so: a warning, not an error.
check "public_web" {
  assert {
    condition     = alltrue([for c in var.allowed_cidrs : try(tonumber(split("/", c)[1]) >= 8, true)])
    error_message = "allowed_cidrs opens MLflow's entry point (the host's nginx on 443 and 80, or the load balancer's 443) to a block wider than /8 (${join(", ", [for c in var.allowed_cidrs : c if !try(tonumber(split("/", c)[1]) >= 8, true)])}); 0.0.0.0/0 is the whole internet. Fine for a public endpoint behind TLS and authentication; otherwise narrow it."
  }
}

resource "aws_security_group" "mlflow" {
  #checkov:skip=CKV2_AWS_5:Attached to instances and RDS by the xeon_hosts and database modules (another module).
  name        = "${var.name}-mlflow"
  description = "MLflow host: nginx from allowed_cidrs and trainers, SSH from admin_cidrs only"
  vpc_id      = var.vpc_id

  tags = merge(var.tags, { Name = "${var.name}-mlflow" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_security_group" "trainer" {
  # "DDP ports" are every TCP port (trainers_in/trainers_out below). The description is kept as it
  # was: changing it replaces the group, and create_before_destroy cannot reuse the name.
  #checkov:skip=CKV2_AWS_5:Attached to instances and RDS by the xeon_hosts and database modules (another module).
  name        = "${var.name}-trainer"
  description = "Trainer hosts: DDP ports between trainers only, SSH from admin_cidrs only"
  vpc_id      = var.vpc_id

  tags = merge(var.tags, { Name = "${var.name}-trainer" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_security_group" "db" {
  #checkov:skip=CKV2_AWS_5:Attached to instances and RDS by the xeon_hosts and database modules (another module).
  name        = "${var.name}-db"
  description = "PostgreSQL: only from the MLflow and trainer security groups"
  vpc_id      = var.vpc_id

  tags = merge(var.tags, { Name = "${var.name}-db" })

  lifecycle {
    create_before_destroy = true
  }
}

# --- MLflow host -------------------------------------------------------------

resource "aws_security_group_rule" "mlflow_web_in" {
  #checkov:skip=CKV_AWS_260:Source is var.allowed_cidrs, which has no default: port 80 is public only if the caller says so, and check.public_web then warns in the plan.
  for_each = local.lb ? {} : local.web_ports

  type              = "ingress"
  description       = "nginx ${each.key} from allowed_cidrs"
  security_group_id = aws_security_group.mlflow.id
  protocol          = "tcp"
  from_port         = each.value
  to_port           = each.value
  cidr_blocks       = var.allowed_cidrs
}

resource "aws_security_group_rule" "mlflow_web_from_trainers" {
  # Behind the load balancer the hosts speak HTTPS only.
  for_each = local.lb ? { https = 443 } : local.web_ports

  type                     = "ingress"
  description              = "nginx ${each.key} from trainers (MLflow tracking)"
  security_group_id        = aws_security_group.mlflow.id
  protocol                 = "tcp"
  from_port                = each.value
  to_port                  = each.value
  source_security_group_id = aws_security_group.trainer.id
}

resource "aws_security_group_rule" "ssh_in" {
  #checkov:skip=CKV_AWS_24:Source is var.admin_cidrs, whose validation accepts only canonical IPv4 blocks of /24 or narrower (/16 at the widest); by default no SSH rule exists.
  # Hosts behind the load balancer have no public address: SSM only, no SSH rule.
  for_each = length(var.admin_cidrs) > 0 && !local.lb ? { mlflow = aws_security_group.mlflow.id, trainer = aws_security_group.trainer.id } : {}

  type              = "ingress"
  description       = "SSH from admin_cidrs"
  security_group_id = each.value
  protocol          = "tcp"
  from_port         = 22
  to_port           = 22
  cidr_blocks       = var.admin_cidrs
}

# Outbound: HTTPS/HTTP for packages, S3, SSM and Secrets Manager endpoints.
resource "aws_security_group_rule" "web_out" {
  for_each = {
    for pair in setproduct(keys(local.host_groups), keys(local.web_ports)) : "${pair[0]}-${pair[1]}" => {
      sg   = local.host_groups[pair[0]]
      port = local.web_ports[pair[1]]
    }
  }

  type              = "egress"
  description       = "Outbound ${each.key} (packages, S3, SSM, Secrets Manager)"
  security_group_id = each.value.sg
  protocol          = "tcp"
  from_port         = each.value.port
  to_port           = each.value.port
  cidr_blocks       = ["0.0.0.0/0"]
}

resource "aws_security_group_rule" "db_out" {
  for_each = local.host_groups

  type                     = "egress"
  description              = "PostgreSQL to the database security group"
  security_group_id        = each.value
  protocol                 = "tcp"
  from_port                = var.db_port
  to_port                  = var.db_port
  source_security_group_id = aws_security_group.db.id
}

# --- Trainers: all TCP between trainers only -------------------------------
# torch.distributed's c10d rendezvous listens on one fixed port (29500 on the first trainer), but
# gloo's pairwise connections between ranks listen on ephemeral ports chosen at run time, so no
# fixed range covers them: trainers accept any TCP port, from members of their own group only.

resource "aws_security_group_rule" "trainers_in" {
  type              = "ingress"
  description       = "All TCP from trainers only (DDP: c10d rendezvous and gloo ephemeral ports)"
  security_group_id = aws_security_group.trainer.id
  protocol          = "tcp"
  from_port         = 0
  to_port           = 65535
  self              = true
}

resource "aws_security_group_rule" "trainers_out" {
  type              = "egress"
  description       = "All TCP to trainers only (DDP: c10d rendezvous and gloo ephemeral ports)"
  security_group_id = aws_security_group.trainer.id
  protocol          = "tcp"
  from_port         = 0
  to_port           = 65535
  self              = true
}

# --- Database ----------------------------------------------------------------

resource "aws_security_group_rule" "db_in" {
  for_each = local.host_groups

  type                     = "ingress"
  description              = "PostgreSQL from the ${each.key} security group"
  security_group_id        = aws_security_group.db.id
  protocol                 = "tcp"
  from_port                = var.db_port
  to_port                  = var.db_port
  source_security_group_id = each.value
}

# --- Monitoring: the MLflow host's Prometheus scrapes the trainers' node exporters ---------------
# Only the MLflow group may reach the exporter's port (the node_exporter role listens on the
# trainer's private address), and the MLflow group may open it only towards the trainer group: no
# CIDR rule, nothing from outside the VPC.

resource "aws_security_group_rule" "node_exporter_from_mlflow" {
  type                     = "ingress"
  description              = "Prometheus node exporter from the MLflow host (its Prometheus) only"
  security_group_id        = aws_security_group.trainer.id
  protocol                 = "tcp"
  from_port                = var.node_exporter_port
  to_port                  = var.node_exporter_port
  source_security_group_id = aws_security_group.mlflow.id
}

resource "aws_security_group_rule" "node_exporter_to_trainers" {
  type                     = "egress"
  description              = "Prometheus scrapes of the trainer node exporters"
  security_group_id        = aws_security_group.mlflow.id
  protocol                 = "tcp"
  from_port                = var.node_exporter_port
  to_port                  = var.node_exporter_port
  source_security_group_id = aws_security_group.trainer.id
}

# --- Load balancer and serving hosts (enable_load_balancer: the scaled layout) ------------------
# The ALB takes HTTPS from allowed_cidrs and opens connections only to the hosts' HTTPS port; the
# MLflow and serving hosts take HTTPS from the ALB's group (and MLflow from the trainers and serving
# hosts, SG to SG inside the VPC), never from a CIDR. Exporters answer the MLflow group's
# Prometheus only: SG-referenced rules, nothing from outside the VPC.

resource "aws_security_group" "alb" {
  #checkov:skip=CKV2_AWS_5:Attached to the load balancer in envs/prod (another module).
  count = local.lb ? 1 : 0

  name        = "${var.name}-alb"
  description = "Load balancer: HTTPS from allowed_cidrs, HTTPS to the MLflow and serving hosts only"
  vpc_id      = var.vpc_id

  tags = merge(var.tags, { Name = "${var.name}-alb" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_security_group" "serving" {
  #checkov:skip=CKV2_AWS_5:Attached to the serving hosts' launch template by the xeon_hosts module (another module).
  count = local.lb ? 1 : 0

  name        = "${var.name}-serving"
  description = "Serving hosts: HTTPS from the load balancer only, exporters from the MLflow group only"
  vpc_id      = var.vpc_id

  tags = merge(var.tags, { Name = "${var.name}-serving" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_security_group_rule" "alb_https_in" {
  count = local.lb ? 1 : 0

  type              = "ingress"
  description       = "HTTPS from allowed_cidrs (TLS terminated by the load balancer)"
  security_group_id = aws_security_group.alb[0].id
  protocol          = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_blocks       = var.allowed_cidrs
}

# The private hosts (trainers, serving) reach MLflow by its public name too: their traffic to the
# ALB's public addresses leaves through the VPC's NAT gateway, so its address is let in.
resource "aws_security_group_rule" "alb_https_from_nat" {
  count = local.lb && var.allow_nat_to_alb ? 1 : 0

  type              = "ingress"
  description       = "HTTPS from the NAT gateway of this VPC (private hosts calling the public name)"
  security_group_id = aws_security_group.alb[0].id
  protocol          = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_blocks       = [for ip in var.nat_public_ips : "${ip}/32"]
}

resource "aws_security_group_rule" "alb_to_hosts" {
  for_each = local.lb ? { mlflow = aws_security_group.mlflow.id, serving = aws_security_group.serving[0].id } : {}

  type                     = "egress"
  description              = "HTTPS to nginx on the ${each.key} hosts (targets and health checks)"
  security_group_id        = aws_security_group.alb[0].id
  protocol                 = "tcp"
  from_port                = 443
  to_port                  = 443
  source_security_group_id = each.value
}

resource "aws_security_group_rule" "hosts_https_from_alb" {
  for_each = local.lb ? { mlflow = aws_security_group.mlflow.id, serving = aws_security_group.serving[0].id } : {}

  type                     = "ingress"
  description              = "HTTPS from the load balancer only"
  security_group_id        = each.value
  protocol                 = "tcp"
  from_port                = 443
  to_port                  = 443
  source_security_group_id = aws_security_group.alb[0].id
}

resource "aws_security_group_rule" "mlflow_https_from_serving" {
  count = local.lb ? 1 : 0

  type                     = "ingress"
  description              = "nginx https from the serving hosts (model loading from the registry)"
  security_group_id        = aws_security_group.mlflow.id
  protocol                 = "tcp"
  from_port                = 443
  to_port                  = 443
  source_security_group_id = aws_security_group.serving[0].id
}

# Prometheus on the MLflow group scrapes the node exporter of every MLflow and serving host and the
# serving app's /metrics; trainers are covered by node_exporter_from_mlflow above.
locals {
  exporter_rules = local.lb ? {
    "mlflow-node"     = { sg = aws_security_group.mlflow.id, port = var.node_exporter_port, what = "node exporter" }
    "serving-node"    = { sg = aws_security_group.serving[0].id, port = var.node_exporter_port, what = "node exporter" }
    "serving-metrics" = { sg = aws_security_group.serving[0].id, port = var.serving_port, what = "serving /metrics" }
  } : {}
}

resource "aws_security_group_rule" "exporters_from_mlflow" {
  for_each = local.exporter_rules

  type                     = "ingress"
  description              = "Prometheus ${each.value.what} scrapes from the MLflow group only"
  security_group_id        = each.value.sg
  protocol                 = "tcp"
  from_port                = each.value.port
  to_port                  = each.value.port
  source_security_group_id = aws_security_group.mlflow.id
}

resource "aws_security_group_rule" "exporters_to_hosts" {
  for_each = local.exporter_rules

  type                     = "egress"
  description              = "Prometheus ${each.value.what} scrapes"
  security_group_id        = aws_security_group.mlflow.id
  protocol                 = "tcp"
  from_port                = each.value.port
  to_port                  = each.value.port
  source_security_group_id = each.value.sg
}

# --- Alertmanager cluster between the MLflow hosts (enable_load_balancer: the scaled layout) ----
# Each MLflow host runs Prometheus and Alertmanager; the Alertmanagers gossip (memberlist: TCP and
# UDP on one port) so that an alert both Prometheus servers raise is delivered once. Members of the
# MLflow group only, never a CIDR.

resource "aws_security_group_rule" "alertmanager_cluster_in" {
  for_each = local.lb ? toset(["tcp", "udp"]) : toset([])

  type              = "ingress"
  description       = "Alertmanager cluster gossip (${each.key}) from the other MLflow hosts only"
  security_group_id = aws_security_group.mlflow.id
  protocol          = each.key
  from_port         = var.alertmanager_cluster_port
  to_port           = var.alertmanager_cluster_port
  self              = true
}

resource "aws_security_group_rule" "alertmanager_cluster_out" {
  for_each = local.lb ? toset(["tcp", "udp"]) : toset([])

  type              = "egress"
  description       = "Alertmanager cluster gossip (${each.key}) to the other MLflow hosts only"
  security_group_id = aws_security_group.mlflow.id
  protocol          = each.key
  from_port         = var.alertmanager_cluster_port
  to_port           = var.alertmanager_cluster_port
  self              = true
}
