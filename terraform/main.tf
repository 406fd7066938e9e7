# Pulse on Google Cloud: five Cloud Run functions, the topics and subscriptions that feed them,
# the buckets, the BigQuery dataset, least-privilege identities and alerting. See docs/deploy.md.

locals {
  labels = merge({ app = "pulse", deployment = var.name_prefix }, var.labels)

  apis = concat([
    "aiplatform.googleapis.com",
    "artifactregistry.googleapis.com",
    "bigquery.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "eventarc.googleapis.com",
    "iam.googleapis.com",
    "iamcredentials.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "storage.googleapis.com",
    ], var.cloud_sql.enabled ? [
    "secretmanager.googleapis.com",
    "sqladmin.googleapis.com",
  ] : [])

  # Google-managed identities that act on our behalf.
  pubsub_agent  = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
  storage_agent = data.google_storage_project_service_account.this.member
}

data "google_project" "this" {
  project_id = var.project
}

data "google_storage_project_service_account" "this" {
  project = var.project

  depends_on = [google_project_service.enabled]
}

resource "google_project_service" "enabled" {
  for_each = toset(local.apis)

  project            = var.project
  service            = each.value
  disable_on_destroy = false
}

resource "google_artifact_registry_repository" "images" {
  #checkov:skip=CKV_GCP_84:Images hold no secrets (configuration comes from Terraform); Google-managed encryption suffices.
  project       = var.project
  location      = var.region
  repository_id = var.name_prefix
  format        = "DOCKER"
  description   = "Pulse function images, tagged by commit."
  labels        = local.labels

  docker_config {
    immutable_tags = true
  }

  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = 20
    }
  }

  cleanup_policies {
    id     = "delete-old"
    action = "DELETE"
    condition {
      older_than = "2592000s"
    }
  }

  depends_on = [google_project_service.enabled]
}
