output "bucket_id" {
  description = "Name of the artifact bucket."
  value       = aws_s3_bucket.this.id
}

output "bucket_arn" {
  description = "ARN of the artifact bucket."
  value       = aws_s3_bucket.this.arn
}

output "bucket_policy" {
  description = "The TLS-only bucket policy document (JSON)."
  value       = aws_s3_bucket_policy.this.policy
}
