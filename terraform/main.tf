# Audio Diary on AWS: VPC -> EKS (Karpenter, KEDA, AWS Load Balancer Controller) -> S3, SQS,
# RDS PostgreSQL, ECR, KMS -> IAM roles for the web and worker service accounts (IRSA).
#
# Every externally visible name is derived here, once, from project + environment; the
# Kubernetes overlay deploy/overlays/<environment> must use the same names
# (deploy/tests/test_deploy_static.py resolves these locals and compares).

provider "aws" {
  region = var.aws_region

  default_tags {
    tags = local.tags
  }
}

provider "helm" {
  kubernetes = {
    host                   = module.eks.cluster_endpoint
    cluster_ca_certificate = base64decode(module.eks.cluster_certificate_authority_data)
    exec = {
      api_version = "client.authentication.k8s.io/v1beta1"
      command     = "aws"
      args        = ["eks", "get-token", "--cluster-name", module.eks.cluster_name, "--region", var.aws_region]
    }
  }
}

data "aws_caller_identity" "current" {}

# Resolves exactly the zones named in var.availability_zones (and fails the plan if one is
# not available): the subnet layout never changes because AWS adds a zone.
data "aws_availability_zones" "selected" {
  state = "available"

  filter {
    name   = "zone-name"
    values = var.availability_zones
  }
}

locals {
  name         = "${var.project}-${var.environment}"
  cluster_name = local.name
  account_id   = data.aws_caller_identity.current.account_id

  # Application resources (ConfigMap values in deploy/overlays/<environment>/config.env).
  queue_name  = "${local.name}-transcription"
  dlq_name    = "${local.name}-transcription-dlq"
  bucket_name = "${local.name}-audio-${local.account_id}"
  kms_alias   = "alias/${local.name}-data"

  # IAM roles (ServiceAccount annotations and the EC2NodeClass in the overlay).
  web_role_name            = "${local.name}-web"
  worker_role_name         = "${local.name}-worker"
  karpenter_node_role_name = "${local.name}-karpenter-node"

  # One repository per image; images are tagged with the git commit, never overwritten.
  ecr_repository_names = ["${local.name}-web", "${local.name}-worker"]

  azs = data.aws_availability_zones.selected.names

  tags = {
    Project     = var.project
    Environment = var.environment
    ManagedBy   = "terraform"
  }
}

module "network" {
  source = "./modules/network"

  name               = local.name
  cluster_name       = local.cluster_name
  vpc_cidr           = var.vpc_cidr
  azs                = local.azs
  single_nat_gateway = var.single_nat_gateway
  log_retention_days = var.log_retention_days
}

module "services" {
  source = "./modules/services"

  name                          = local.name
  vpc_id                        = module.network.vpc_id
  private_subnet_ids            = module.network.private_subnet_ids
  bucket_name                   = local.bucket_name
  kms_alias                     = local.kms_alias
  queue_name                    = local.queue_name
  dlq_name                      = local.dlq_name
  visibility_timeout_seconds    = var.sqs_visibility_timeout
  dlq_max_receive_count         = var.dlq_max_receive_count
  dlq_retention_seconds         = var.dlq_retention_seconds
  audio_noncurrent_version_days = var.audio_noncurrent_version_days
  ecr_repository_names          = local.ecr_repository_names
  domain_name                   = var.domain_name
  db_instance_class             = var.db_instance_class
  db_engine_version             = var.db_engine_version
  db_allocated_storage          = var.db_allocated_storage
  db_max_allocated_storage      = var.db_max_allocated_storage
  db_multi_az                   = var.db_multi_az
  db_backup_retention_days      = var.db_backup_retention_days
}

module "eks" {
  source = "./modules/eks"

  cluster_name                               = local.cluster_name
  cluster_version                            = var.cluster_version
  vpc_id                                     = module.network.vpc_id
  private_subnet_ids                         = module.network.private_subnet_ids
  cluster_endpoint_public_access             = var.cluster_endpoint_public_access
  cluster_endpoint_public_access_cidrs       = var.cluster_endpoint_public_access_cidrs
  log_retention_days                         = var.log_retention_days
  system_node_instance_types                 = var.system_node_instance_types
  system_node_min_size                       = var.system_node_min_size
  system_node_desired_size                   = var.system_node_desired_size
  system_node_max_size                       = var.system_node_max_size
  karpenter_node_role_name                   = local.karpenter_node_role_name
  karpenter_chart_version                    = var.karpenter_chart_version
  keda_chart_version                         = var.keda_chart_version
  keda_sqs_queue_arns                        = [module.services.queue_arn]
  aws_load_balancer_controller_chart_version = var.aws_load_balancer_controller_chart_version
}

# The database accepts PostgreSQL only from the cluster security group, which every node
# (managed node group and Karpenter nodes) and so every pod carries.
resource "aws_vpc_security_group_ingress_rule" "db_from_cluster" {
  description                  = "PostgreSQL from EKS nodes and pods"
  security_group_id            = module.services.db_security_group_id
  referenced_security_group_id = module.eks.cluster_security_group_id
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
}

module "iam" {
  source = "./modules/iam"

  oidc_provider_arn      = module.eks.oidc_provider_arn
  oidc_provider_url      = module.eks.oidc_provider_url
  namespace              = var.k8s_namespace
  web_service_account    = var.web_service_account
  worker_service_account = var.worker_service_account
  web_role_name          = local.web_role_name
  worker_role_name       = local.worker_role_name
  bucket_arn             = module.services.bucket_arn
  queue_arn              = module.services.queue_arn
  kms_key_arn            = module.services.kms_key_arn
  aws_region             = var.aws_region
  account_id             = local.account_id
}
