locals {
  web_ports = { https = 443, http = 80 }

  # A canonical IPv4 CIDR: four decimal octets without leading zeros, a prefix 0-32 without
  # leading zeros ("0.0.0.0/00" and "010.0.0.0/8" are refused although Go's parser takes them).
  ipv4_cidr_regex = "^((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])/(3[0-2]|[12]?[0-9])$"
}

# A deliberately public endpoint is allowed, but the plan says so: a warning, not an error.
check "public_web" {
  assert {
    condition     = alltrue([for c in var.allowed_cidrs : try(tonumber(split("/", c)[1]) >= 8, true)])
    error_message = "allowed_cidrs opens MLflow's nginx (443 and 80) to a block wider than /8 (${join(", ", [for c in var.allowed_cidrs : c if !try(tonumber(split("/", c)[1]) >= 8, true)])}); 0.0.0.0/0 is the whole internet. Fine for a public endpoint behind TLS and authentication; otherwise narrow it."
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
  for_each = local.web_ports

  type              = "ingress"
  description       = "nginx ${each.key} from allowed_cidrs"
  security_group_id = aws_security_group.mlflow.id
  protocol          = "tcp"
  from_port         = each.value
  to_port           = each.value
  cidr_blocks       = var.allowed_cidrs
}

resource "aws_security_group_rule" "mlflow_web_from_trainers" {
  for_each = local.web_ports

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
  for_each = length(var.admin_cidrs) > 0 ? { mlflow = aws_security_group.mlflow.id, trainer = aws_security_group.trainer.id } : {}

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
    for pair in setproduct(["mlflow", "trainer"], keys(local.web_ports)) : "${pair[0]}-${pair[1]}" => {
      sg   = pair[0] == "mlflow" ? aws_security_group.mlflow.id : aws_security_group.trainer.id
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
  for_each = { mlflow = aws_security_group.mlflow.id, trainer = aws_security_group.trainer.id }

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
  for_each = { mlflow = aws_security_group.mlflow.id, trainer = aws_security_group.trainer.id }

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
