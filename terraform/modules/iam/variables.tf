variable "oidc_provider_arn" {
  type = string
}

variable "oidc_provider_url" {
  description = "Cluster OIDC issuer without https://."
  type        = string
}

variable "namespace" {
  type = string
}

variable "web_service_account" {
  type = string
}

variable "worker_service_account" {
  type = string
}

variable "web_role_name" {
  type = string
}

variable "worker_role_name" {
  type = string
}

variable "bucket_arn" {
  type = string
}

variable "queue_arn" {
  type = string
}

variable "kms_key_arn" {
  type = string
}

variable "aws_region" {
  type = string
}

variable "account_id" {
  type = string
}
