# TLS certificate for the Ingress host. The AWS Load Balancer Controller finds it by the host
# in the Ingress's spec.tls (certificate discovery); validate it with the DNS records in the
# acm_validation_records output.

resource "aws_acm_certificate" "web" {
  count = var.domain_name == "" ? 0 : 1

  domain_name       = var.domain_name
  validation_method = "DNS"

  lifecycle {
    create_before_destroy = true
  }
}
