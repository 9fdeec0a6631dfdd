output "web_role_arn" {
  value = aws_iam_role.web.arn
}

output "worker_role_arn" {
  value = aws_iam_role.worker.arn
}
