output "service_name" {
  description = "Cloud Run service name."
  value       = google_cloud_run_v2_service.this.name
}

output "uri" {
  description = "The service's HTTPS URL."
  value       = google_cloud_run_v2_service.this.uri
}

output "service_account_email" {
  description = "The identity the function runs as; grant it only what the function needs."
  value       = google_service_account.this.email
}

output "service_account_member" {
  description = "The identity as an IAM member (`serviceAccount:…`)."
  value       = google_service_account.this.member
}

output "invoker_members" {
  description = "Members allowed to invoke the service."
  value       = [for b in google_cloud_run_v2_service_iam_member.invoker : b.member]
}
