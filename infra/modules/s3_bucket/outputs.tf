output "bucket_id" {
  description = "Name of the bucket (available once its policy is in place, so log delivery can target it)."
  value       = aws_s3_bucket.this.id

  depends_on = [aws_s3_bucket_policy.this]
}

output "bucket_arn" {
  description = "ARN of the bucket."
  value       = aws_s3_bucket.this.arn
}

output "bucket_policy" {
  description = "The bucket policy document (JSON): TLS only, plus policy_statements."
  value       = aws_s3_bucket_policy.this.policy
}

output "kms_key_arn" {
  description = "KMS key of the default encryption (null for SSE-S3 or the AWS-managed key)."
  value       = var.sse_algorithm == "aws:kms" ? var.kms_key_arn : null
}

output "access_log_target" {
  description = "Bucket receiving this bucket's server access logs (null when access logging is off)."
  value       = try(aws_s3_bucket_logging.this[0].target_bucket, null)
}
