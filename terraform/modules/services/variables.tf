variable "name" {
  description = "Name prefix (project-environment)."
  type        = string
}

variable "vpc_id" {
  type = string
}

variable "private_subnet_ids" {
  description = "Subnets of the database (private, one per AZ)."
  type        = list(string)
}

variable "bucket_name" {
  description = "Audio bucket (AWS_STORAGE_BUCKET_NAME)."
  type        = string
}

variable "kms_alias" {
  description = "Alias of the customer-managed key for S3, SQS, RDS and ECR (alias/...)."
  type        = string
}

variable "queue_name" {
  description = "Transcription queue (CELERY_QUEUE)."
  type        = string
}

variable "dlq_name" {
  type = string
}

variable "visibility_timeout_seconds" {
  description = "Longer than the longest step plus any countdown (SQS_VISIBILITY_TIMEOUT)."
  type        = number
  default     = 7200

  validation {
    condition     = var.visibility_timeout_seconds <= 43200
    error_message = "SQS allows at most 43200 seconds (12 hours)."
  }
}

variable "dlq_max_receive_count" {
  type    = number
  default = 5
}

variable "queue_retention_seconds" {
  description = "Retention of the transcription queue (4 days): shorter than the dead-letter queue's, because a moved message keeps its original enqueue time."
  type        = number
  default     = 345600
}

variable "dlq_retention_seconds" {
  type    = number
  default = 1209600
}

variable "audio_noncurrent_version_days" {
  type    = number
  default = 90
}

variable "ecr_repository_names" {
  type = list(string)
}

variable "image_retention_count" {
  description = "Tagged images kept per ECR repository."
  type        = number
  default     = 50
}

variable "domain_name" {
  description = "Host name for the ACM certificate; empty = none."
  type        = string
  default     = ""
}

variable "db_instance_class" {
  type = string
}

variable "db_engine_version" {
  type = string
}

variable "db_allocated_storage" {
  type = number
}

variable "db_max_allocated_storage" {
  type = number
}

variable "db_multi_az" {
  type = bool
}

variable "db_backup_retention_days" {
  type = number
}

variable "db_name" {
  type    = string
  default = "diary"
}
