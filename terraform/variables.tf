variable "aws_region" {
  description = "AWS region for every resource."
  type        = string
  default     = "us-east-1"
}

variable "project" {
  description = "Project name: the first part of every resource name."
  type        = string
  default     = "audio-diary"
}

variable "environment" {
  description = "Environment name (prod, staging): the second part of every resource name. Must match the deploy/overlays/<environment> folder."
  type        = string
  default     = "prod"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,15}$", var.environment))
    error_message = "environment must be lower-case letters, digits and dashes (2-16 characters)."
  }
}

# --- Network ---------------------------------------------------------------------------

variable "vpc_cidr" {
  description = "CIDR of the VPC (a /16: private subnets are /20 each for pod IPs)."
  type        = string
  default     = "10.40.0.0/16"
}

variable "availability_zones" {
  description = "Availability zones (names in aws_region) for one public and one private subnet each."
  type        = list(string)
  default     = ["us-east-1a", "us-east-1b", "us-east-1c"]
}

variable "single_nat_gateway" {
  description = "One NAT gateway for all AZs (cheaper, staging) instead of one per AZ (prod)."
  type        = bool
  default     = false
}

variable "log_retention_days" {
  description = "Retention of VPC flow logs and EKS control-plane logs in CloudWatch."
  type        = number
  default     = 365
}

# --- EKS -------------------------------------------------------------------------------

variable "cluster_version" {
  description = "Kubernetes version of the EKS control plane (deploy/tests validate manifests against it)."
  type        = string
  default     = "1.34"
}

variable "cluster_endpoint_public_access" {
  description = "Whether the EKS API endpoint is reachable from the internet (only from cluster_endpoint_public_access_cidrs). Off by default: the private endpoint serves the VPC (a self-hosted runner, a VPN)."
  type        = bool
  default     = false
}

variable "cluster_endpoint_public_access_cidrs" {
  description = "CIDRs allowed to reach the public EKS API endpoint when it is on."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for cidr in var.cluster_endpoint_public_access_cidrs : can(cidrnetmask(cidr))])
    error_message = "cluster_endpoint_public_access_cidrs must be IPv4 CIDRs."
  }
}

variable "system_node_instance_types" {
  description = "Instance types of the managed node group that runs add-ons (Karpenter, KEDA, load balancer controller, CoreDNS) and the web pods."
  type        = list(string)
  default     = ["m6i.large"]
}

variable "system_node_min_size" {
  type    = number
  default = 2
}

variable "system_node_desired_size" {
  type    = number
  default = 2
}

variable "system_node_max_size" {
  type    = number
  default = 4
}

variable "karpenter_chart_version" {
  description = "Karpenter Helm chart (oci://public.ecr.aws/karpenter/karpenter); 1.x serves karpenter.sh/v1 and karpenter.k8s.aws/v1."
  type        = string
  default     = "1.14.1"
}

variable "keda_chart_version" {
  description = "KEDA Helm chart (https://kedacore.github.io/charts)."
  type        = string
  default     = "2.20.2"
}

variable "aws_load_balancer_controller_chart_version" {
  description = "AWS Load Balancer Controller Helm chart (https://aws.github.io/eks-charts); serves the `alb` IngressClass."
  type        = string
  default     = "3.5.0"
}

# --- Application services ----------------------------------------------------------------

variable "domain_name" {
  description = "Public host name of the web app (Ingress host). An ACM certificate is requested for it; empty = no certificate."
  type        = string
  default     = ""
}

variable "sqs_visibility_timeout" {
  description = "Visibility timeout of the transcription queue (seconds). Must exceed TRANSCRIBE_HARD_TIME_LIMIT plus POLL_INTERVAL_SECONDS; equals SQS_VISIBILITY_TIMEOUT in the ConfigMap."
  type        = number
  default     = 7200
}

variable "dlq_max_receive_count" {
  description = "Deliveries before a message moves to the dead-letter queue."
  type        = number
  default     = 5
}

variable "dlq_retention_seconds" {
  description = "How long the dead-letter queue keeps messages (14 days, the SQS maximum)."
  type        = number
  default     = 1209600
}

variable "audio_noncurrent_version_days" {
  description = "Days a replaced or deleted audio object version is kept before it expires."
  type        = number
  default     = 90
}

variable "db_instance_class" {
  type    = string
  default = "db.t4g.medium"
}

variable "db_engine_version" {
  description = "PostgreSQL major version (minor versions upgrade automatically)."
  type        = string
  default     = "16"
}

variable "db_allocated_storage" {
  type    = number
  default = 20
}

variable "db_max_allocated_storage" {
  type    = number
  default = 200
}

variable "db_multi_az" {
  type    = bool
  default = true
}

variable "db_backup_retention_days" {
  type    = number
  default = 14
}

# --- Kubernetes identities (must match deploy/base) ----------------------------------------

variable "k8s_namespace" {
  description = "Namespace of the application (deploy/base/app/kustomization.yaml)."
  type        = string
  default     = "audio-diary"
}

variable "web_service_account" {
  description = "ServiceAccount of the web pods, the migration Job and the sweep CronJob."
  type        = string
  default     = "diary-web"
}

variable "worker_service_account" {
  description = "ServiceAccount of the Celery worker pods."
  type        = string
  default     = "diary-worker"
}
