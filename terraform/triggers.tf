# Cloud Storage finalize events on the landing bucket reach parquet-loader through Eventarc.
# (Pub/Sub sources use push subscriptions instead: see pubsub.tf.)

resource "google_service_account" "trigger" {
  project      = var.project
  account_id   = "${var.name_prefix}-trigger"
  display_name = "Pulse Eventarc trigger"
  description  = "Identity of the Eventarc trigger: receives events and invokes parquet-loader."
}

resource "google_project_iam_member" "trigger_receives_events" {
  project = var.project
  role    = "roles/eventarc.eventReceiver"
  member  = google_service_account.trigger.member
}

# Cloud Storage publishes its notifications to the trigger's (Eventarc-managed) topic.
resource "google_project_iam_member" "storage_agent_publishes" {
  project = var.project
  role    = "roles/pubsub.publisher"
  member  = local.storage_agent
}

# Eventarc requires a Cloud Storage trigger in the bucket's own location (a multi-region bucket
# needs a multi-region trigger); the destination service stays in var.region.
resource "google_eventarc_trigger" "landing_finalized" {
  project         = var.project
  location        = lower(var.bucket_location)
  name            = "${var.name_prefix}-parquet-loader-finalized"
  service_account = google_service_account.trigger.email
  labels          = local.labels

  matching_criteria {
    attribute = "type"
    value     = "google.cloud.storage.object.v1.finalized"
  }
  matching_criteria {
    attribute = "bucket"
    value     = google_storage_bucket.landing.name
  }

  destination {
    cloud_run_service {
      service = module.function["parquet-loader"].service_name
      region  = var.region
      path    = "/"
    }
  }

  depends_on = [
    google_project_iam_member.trigger_receives_events,
    google_project_iam_member.storage_agent_publishes,
  ]
}
