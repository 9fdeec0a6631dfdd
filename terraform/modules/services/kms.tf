# One customer-managed key for the application's data at rest: audio objects (S3), queue
# messages (SQS), the database and its snapshots (RDS), performance insights, the RDS master
# password secret and container images (ECR). IAM policies (modules/iam) grant its use.

data "aws_caller_identity" "current" {}

data "aws_region" "current" {}

# The key policy only delegates to IAM (a key policy's "Resource": "*" means "this key"; it is
# written inline, not as an IAM policy document). AWS Transcribe reads the encrypted audio and
# writes encrypted results with the worker role's permissions (forward access sessions), so no
# service principal needs a statement of its own.
resource "aws_kms_key" "data" {
  description             = "${var.name} application data (S3, SQS, RDS, ECR)"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "AccountAdministersAndDelegatesToIAM"
        Effect    = "Allow"
        Principal = { AWS = "arn:aws:iam::${data.aws_caller_identity.current.account_id}:root" }
        Action    = "kms:*"
        Resource  = "*"
      },
    ]
  })
}

resource "aws_kms_alias" "data" {
  name          = var.kms_alias
  target_key_id = aws_kms_key.data.key_id
}
