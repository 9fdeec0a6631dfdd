# The values deploy/README.md copies into deploy/overlays/<environment>/ (config.env and the
# patches) and into the GitHub repository secrets.

output "aws_region" {
  value = var.aws_region
}

output "account_id" {
  value = local.account_id
}

output "cluster_name" {
  description = "EKS_CLUSTER_NAME secret; `aws eks update-kubeconfig --name <this>`."
  value       = module.eks.cluster_name
}

output "cluster_endpoint" {
  value = module.eks.cluster_endpoint
}

output "ecr_registry" {
  description = "Registry host for `docker login` / `aws ecr get-login-password`."
  value       = "${local.account_id}.dkr.ecr.${var.aws_region}.amazonaws.com"
}

output "ecr_repository_urls" {
  value = module.services.ecr_repository_urls
}

output "bucket_name" {
  description = "AWS_STORAGE_BUCKET_NAME and AWS_TRANSCRIBE_OUTPUT_BUCKET."
  value       = module.services.bucket_name
}

output "kms_key_arn" {
  value = module.services.kms_key_arn
}

output "kms_alias_arn" {
  description = "AWS_S3_KMS_KEY_ID."
  value       = module.services.kms_alias_arn
}

output "queue_name" {
  description = "CELERY_QUEUE."
  value       = module.services.queue_name
}

output "queue_url" {
  description = "SQS_QUEUE_URL and the KEDA trigger's queueURL."
  value       = module.services.queue_url
}

output "dead_letter_queue_url" {
  value = module.services.dlq_url
}

output "sqs_visibility_timeout" {
  description = "SQS_VISIBILITY_TIMEOUT."
  value       = var.sqs_visibility_timeout
}

output "web_role_arn" {
  description = "eks.amazonaws.com/role-arn of the diary-web ServiceAccount."
  value       = module.iam.web_role_arn
}

output "worker_role_arn" {
  description = "eks.amazonaws.com/role-arn of the diary-worker ServiceAccount."
  value       = module.iam.worker_role_arn
}

output "karpenter_node_role_name" {
  description = "spec.role of the EC2NodeClass."
  value       = module.eks.karpenter_node_role_name
}

output "db_endpoint" {
  description = "host:port of PostgreSQL, for DATABASE_URL."
  value       = module.services.db_endpoint
}

output "db_name" {
  value = module.services.db_name
}

output "db_master_user_secret_arn" {
  description = "Secrets Manager secret holding the RDS master password (rotated by RDS: use it only to create the application role)."
  value       = module.services.db_master_user_secret_arn
}

output "acm_certificate_arn" {
  value = module.services.acm_certificate_arn
}

output "acm_validation_records" {
  description = "DNS records that validate the ACM certificate for domain_name."
  value       = module.services.acm_validation_records
}
