# AWS Load Balancer Controller: turns the application's Ingress (ingressClassName alb) into an
# internet-facing ALB with TLS from ACM. Its IAM policy is long and tracks the controller's
# releases, so it comes from the terraform-aws-modules IRSA module (pinned) rather than a copy.

module "aws_load_balancer_controller_irsa" {
  # terraform-aws-modules/iam v6.5.0, pinned by commit (supply chain: a tag can move).
  source = "git::https://github.com/terraform-aws-modules/terraform-aws-iam.git//modules/iam-role-for-service-accounts?ref=981121bcd17618b8ed032223c0d9e647b9277ef9"

  name            = "${var.cluster_name}-aws-load-balancer-controller"
  use_name_prefix = false

  attach_load_balancer_controller_policy = true

  oidc_providers = {
    this = {
      provider_arn               = aws_iam_openid_connect_provider.this.arn
      namespace_service_accounts = ["kube-system:aws-load-balancer-controller"]
    }
  }
}

resource "helm_release" "aws_load_balancer_controller" {
  name       = "aws-load-balancer-controller"
  namespace  = "kube-system"
  repository = "https://aws.github.io/eks-charts"
  chart      = "aws-load-balancer-controller"
  version    = var.aws_load_balancer_controller_chart_version
  wait       = true

  values = [yamlencode({
    clusterName = aws_eks_cluster.this.name
    region      = local.region
    vpcId       = var.vpc_id
    serviceAccount = {
      create = true
      name   = "aws-load-balancer-controller"
      annotations = {
        "eks.amazonaws.com/role-arn" = module.aws_load_balancer_controller_irsa.arn
      }
    }
    nodeSelector = {
      "audio-diary/node-role" = "system"
    }
  })]

  depends_on = [aws_eks_node_group.system]
}
