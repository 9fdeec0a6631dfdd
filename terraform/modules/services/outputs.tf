output "kms_key_arn" {
  value = aws_kms_key.data.arn
}

output "kms_alias_arn" {
  value = aws_kms_alias.data.arn
}

output "bucket_name" {
  value = aws_s3_bucket.audio.id
}

output "bucket_arn" {
  value = aws_s3_bucket.audio.arn
}

output "queue_name" {
  value = aws_sqs_queue.transcription.name
}

output "queue_url" {
  value = aws_sqs_queue.transcription.url
}

output "queue_arn" {
  value = aws_sqs_queue.transcription.arn
}

output "dlq_url" {
  value = aws_sqs_queue.transcription_dlq.url
}

output "dlq_arn" {
  value = aws_sqs_queue.transcription_dlq.arn
}

output "db_security_group_id" {
  value = aws_security_group.db.id
}

output "db_endpoint" {
  value = aws_db_instance.this.endpoint
}

output "db_name" {
  value = aws_db_instance.this.db_name
}

output "db_master_user_secret_arn" {
  value = try(aws_db_instance.this.master_user_secret[0].secret_arn, null)
}

output "ecr_repository_urls" {
  value = { for name, repo in aws_ecr_repository.this : name => repo.repository_url }
}

output "acm_certificate_arn" {
  value = try(aws_acm_certificate.web[0].arn, null)
}

output "acm_validation_records" {
  value = try([
    for option in aws_acm_certificate.web[0].domain_validation_options : {
      name  = option.resource_record_name
      type  = option.resource_record_type
      value = option.resource_record_value
    }
  ], [])
}
