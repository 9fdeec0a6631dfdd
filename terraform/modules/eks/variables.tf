variable "cluster_name" {
  type = string
}

variable "cluster_version" {
  type = string
}

variable "vpc_id" {
  type = string
}

variable "private_subnet_ids" {
  description = "Subnets of the control-plane ENIs and the nodes."
  type        = list(string)
}

variable "cluster_endpoint_public_access" {
  type = bool
}

variable "cluster_endpoint_public_access_cidrs" {
  type = list(string)
}

variable "log_retention_days" {
  type    = number
  default = 365
}

variable "system_node_instance_types" {
  type = list(string)
}

variable "system_node_min_size" {
  type = number
}

variable "system_node_desired_size" {
  type = number
}

variable "system_node_max_size" {
  type = number
}

variable "karpenter_node_role_name" {
  description = "IAM role of the nodes Karpenter launches (spec.role of the EC2NodeClass)."
  type        = string
}

variable "karpenter_chart_version" {
  type = string
}

variable "karpenter_namespace" {
  type    = string
  default = "kube-system"
}

variable "keda_chart_version" {
  type = string
}

variable "keda_namespace" {
  type    = string
  default = "keda"
}

variable "keda_sqs_queue_arns" {
  description = "Queues whose depth the KEDA operator may read (sqs:GetQueueAttributes only)."
  type        = list(string)
}

variable "aws_load_balancer_controller_chart_version" {
  type = string
}
