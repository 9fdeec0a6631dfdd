# IRSA roles of the application's ServiceAccounts, least privilege:
#   web    (gunicorn, the migration Job, the sweep CronJob): read/write audio objects in its bucket,
#          publish to its queue, use the data key.
#   worker (Celery): the same, plus consume its queue and run AWS Transcribe jobs.
# Nothing else: no other bucket, queue or key, no sqs:CreateQueue (queues are predefined).

locals {
  service_accounts = {
    web    = var.web_service_account
    worker = var.worker_service_account
  }
}

data "aws_iam_policy_document" "assume" {
  for_each = local.service_accounts

  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = [var.oidc_provider_arn]
    }

    condition {
      test     = "StringEquals"
      variable = "${var.oidc_provider_url}:sub"
      values   = ["system:serviceaccount:${var.namespace}:${each.value}"]
    }

    condition {
      test     = "StringEquals"
      variable = "${var.oidc_provider_url}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "web" {
  statement {
    sid = "AudioObjects"
    actions = [
      "s3:GetObject",
      "s3:PutObject",
      "s3:DeleteObject",
      "s3:AbortMultipartUpload",
    ]
    resources = ["${var.bucket_arn}/*"]
  }

  statement {
    sid       = "AudioBucketListing"
    actions   = ["s3:ListBucket"]
    resources = [var.bucket_arn]
  }

  statement {
    sid       = "PublishJobs"
    actions   = ["sqs:SendMessage", "sqs:GetQueueUrl", "sqs:GetQueueAttributes"]
    resources = [var.queue_arn]
  }

  statement {
    sid       = "DataKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [var.kms_key_arn]
  }
}

data "aws_iam_policy_document" "worker" {
  statement {
    sid = "AudioObjects"
    actions = [
      "s3:GetObject",
      "s3:PutObject",
      "s3:DeleteObject",
      "s3:AbortMultipartUpload",
    ]
    resources = ["${var.bucket_arn}/*"]
  }

  statement {
    sid       = "AudioBucketListing"
    actions   = ["s3:ListBucket"]
    resources = [var.bucket_arn]
  }

  statement {
    sid = "ConsumeAndChainJobs"
    actions = [
      "sqs:ReceiveMessage",
      "sqs:DeleteMessage",
      "sqs:ChangeMessageVisibility",
      "sqs:SendMessage",
      "sqs:GetQueueUrl",
      "sqs:GetQueueAttributes",
    ]
    resources = [var.queue_arn]
  }

  statement {
    sid       = "DataKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [var.kms_key_arn]
  }

  # TRANSCRIPTION_ENGINE=aws: Transcribe reads the audio and writes its result into the same
  # bucket with the worker's permissions (above).
  statement {
    sid = "TranscriptionJobs"
    actions = [
      "transcribe:StartTranscriptionJob",
      "transcribe:GetTranscriptionJob",
      "transcribe:DeleteTranscriptionJob",
    ]
    resources = ["arn:aws:transcribe:${var.aws_region}:${var.account_id}:transcription-job/*"]
  }
}

resource "aws_iam_role" "web" {
  name               = var.web_role_name
  description        = "IRSA: ${var.namespace}/${var.web_service_account}"
  assume_role_policy = data.aws_iam_policy_document.assume["web"].json
}

resource "aws_iam_role_policy" "web" {
  name   = "audio-diary-web"
  role   = aws_iam_role.web.id
  policy = data.aws_iam_policy_document.web.json
}

resource "aws_iam_role" "worker" {
  name               = var.worker_role_name
  description        = "IRSA: ${var.namespace}/${var.worker_service_account}"
  assume_role_policy = data.aws_iam_policy_document.assume["worker"].json
}

resource "aws_iam_role_policy" "worker" {
  name   = "audio-diary-worker"
  role   = aws_iam_role.worker.id
  policy = data.aws_iam_policy_document.worker.json
}
