variable "name" {
  description = "Name prefix (project-environment)."
  type        = string
}

variable "cluster_name" {
  description = "EKS cluster name: private subnets get the karpenter.sh/discovery tag with this value."
  type        = string
}

variable "vpc_cidr" {
  type = string
}

variable "azs" {
  description = "Availability zones, one public and one private subnet each."
  type        = list(string)
}

variable "single_nat_gateway" {
  type    = bool
  default = false
}

variable "log_retention_days" {
  type    = number
  default = 365
}
