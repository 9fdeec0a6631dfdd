# KEDA scales the Celery worker Deployment on the transcription queue's depth (deploy/base/app/
# keda.yaml). Its operator reads the queue with its own IRSA role (TriggerAuthentication
# podIdentity provider aws, identityOwner keda): sqs:GetQueueAttributes on that queue only.

data "aws_iam_policy_document" "keda_operator" {
  statement {
    sid       = "ReadQueueDepth"
    actions   = ["sqs:GetQueueAttributes"]
    resources = var.keda_sqs_queue_arns
  }
}

resource "aws_iam_role" "keda_operator" {
  name               = "${var.cluster_name}-keda-operator"
  assume_role_policy = data.aws_iam_policy_document.irsa_assume["keda"].json
}

resource "aws_iam_role_policy" "keda_operator" {
  name   = "read-queue-depth"
  role   = aws_iam_role.keda_operator.id
  policy = data.aws_iam_policy_document.keda_operator.json
}

resource "helm_release" "keda" {
  name             = "keda"
  namespace        = var.keda_namespace
  create_namespace = true
  repository       = "https://kedacore.github.io/charts"
  chart            = "keda"
  version          = var.keda_chart_version
  wait             = true

  values = [yamlencode({
    podIdentity = {
      aws = {
        irsa = {
          enabled              = true
          roleArn              = aws_iam_role.keda_operator.arn
          stsRegionalEndpoints = "true"
        }
      }
    }
    nodeSelector = {
      "audio-diary/node-role" = "system"
    }
  })]

  depends_on = [
    aws_eks_node_group.system,
    aws_iam_role_policy.keda_operator,
  ]
}
