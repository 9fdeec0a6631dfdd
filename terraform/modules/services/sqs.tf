# The Celery broker queue. Standard (not FIFO), long polling, encrypted with the CMK, and a
# dead-letter queue: a poison message ends there after dlq_max_receive_count deliveries
# instead of looping. The visibility timeout outlasts the longest step (TRANSCRIBE_HARD_TIME_LIMIT)
# plus Celery's countdowns, so a message is not redelivered while a worker still runs it.

resource "aws_sqs_queue" "transcription_dlq" {
  name                              = var.dlq_name
  message_retention_seconds         = var.dlq_retention_seconds
  kms_master_key_id                 = aws_kms_key.data.arn
  kms_data_key_reuse_period_seconds = 300
}

resource "aws_sqs_queue" "transcription" {
  name                              = var.queue_name
  visibility_timeout_seconds        = var.visibility_timeout_seconds
  message_retention_seconds         = var.queue_retention_seconds
  receive_wait_time_seconds         = 20
  kms_master_key_id                 = aws_kms_key.data.arn
  kms_data_key_reuse_period_seconds = 300

  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.transcription_dlq.arn
    maxReceiveCount     = var.dlq_max_receive_count
  })
}

# Only the transcription queue may move messages into the dead-letter queue.
resource "aws_sqs_queue_redrive_allow_policy" "transcription_dlq" {
  queue_url = aws_sqs_queue.transcription_dlq.id

  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.transcription.arn]
  })
}

data "aws_iam_policy_document" "queue_tls_only" {
  for_each = {
    transcription     = aws_sqs_queue.transcription.arn
    transcription_dlq = aws_sqs_queue.transcription_dlq.arn
  }

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["sqs:*"]
    resources = [each.value]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_sqs_queue_policy" "transcription" {
  queue_url = aws_sqs_queue.transcription.id
  policy    = data.aws_iam_policy_document.queue_tls_only["transcription"].json
}

resource "aws_sqs_queue_policy" "transcription_dlq" {
  queue_url = aws_sqs_queue.transcription_dlq.id
  policy    = data.aws_iam_policy_document.queue_tls_only["transcription_dlq"].json
}
