output "service_urls" {
  description = "HTTPS URL of each function (IAM-protected: call with an identity token)."
  value       = merge({ for f, m in module.function : f => m.uri }, { for m in module.predictor : "predictor" => m.uri })
}

output "service_accounts" {
  description = "The identity each function runs as."
  value       = merge({ for f, m in module.function : f => m.service_account_email }, { for m in module.predictor : "predictor" => m.service_account_email })
}

output "buckets" {
  description = "Raw archive (and dead-letter store) and landing (and quarantine) buckets."
  value = {
    raw     = google_storage_bucket.raw.name
    landing = google_storage_bucket.landing.name
  }
}

output "topics" {
  description = "Pub/Sub topics: raw events in, processed events, and what Pub/Sub dead-lettered."
  value = {
    raw         = google_pubsub_topic.raw.name
    processed   = google_pubsub_topic.processed.name
    dead_letter = google_pubsub_topic.dead_letter.name
  }
}

output "dead_letter_subscription" {
  description = "Pull subscription holding dead-lettered messages for 7 days."
  value       = google_pubsub_subscription.dead_letter_hold.name
}

output "dataset" {
  description = "BigQuery dataset (project.dataset)."
  value       = "${var.project}.${google_bigquery_dataset.pulse.dataset_id}"
}

output "image_repository" {
  description = "Artifact Registry path images are pushed to."
  value       = "${var.region}-docker.pkg.dev/${var.project}/${google_artifact_registry_repository.images.repository_id}"
}

output "cloud_sql_connection_name" {
  description = "Cloud SQL instance connection name (null when Cloud SQL is off)."
  value       = var.cloud_sql.enabled ? google_sql_database_instance.pulse[0].connection_name : null
}

output "images" {
  description = "The image of each function as deployed; scripts/deploy.sh --plan plans a pull request's infrastructure changes with them."
  value       = var.images
}
