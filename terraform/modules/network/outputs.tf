output "vpc_id" {
  value = aws_vpc.this.id
}

output "vpc_cidr" {
  value = aws_vpc.this.cidr_block
}

output "private_subnet_ids" {
  value = aws_subnet.private[*].id
}

output "public_subnet_ids" {
  value = aws_subnet.public[*].id
}

output "nat_public_ips" {
  description = "Egress addresses of the cluster (allow-list them where outbound calls need it)."
  value       = aws_eip.nat[*].public_ip
}
