# Upkeep of the "one row per event" promise on BigQuery (docs/delivery.md): once a day, Cloud
# Scheduler asks table-manager to compact the last week of closed partitions (`POST /compact`
# with an empty body; today's partition, which takes streamed rows, is never touched). The job
# signs in with an OIDC token of its own service account, the only thing besides the operators
# allowed to invoke table-manager's manual routes.

variable "compaction_schedule" {
  description = "When the daily compaction runs (cron, UTC). Late in the night: yesterday's late events and redeliveries have arrived, and the streaming buffer has drained."
  type        = string
  default     = "30 3 * * *"
}

resource "google_project_service" "scheduler" {
  project            = var.project
  service            = "cloudscheduler.googleapis.com"
  disable_on_destroy = false
}

resource "google_service_account" "scheduler" {
  project      = var.project
  account_id   = "${var.name_prefix}-scheduler"
  display_name = "Pulse scheduled upkeep (compaction)"
}

resource "google_cloud_run_v2_service_iam_member" "scheduler_invokes_table_manager" {
  project  = var.project
  location = var.region
  name     = module.function["table-manager"].service_name
  role     = "roles/run.invoker"
  member   = google_service_account.scheduler.member
}

resource "google_cloud_scheduler_job" "compaction" {
  project          = var.project
  region           = var.region
  name             = "${var.name_prefix}-compaction"
  description      = "Removes doubled rows from the last week of closed partitions (table-manager POST /compact)."
  schedule         = var.compaction_schedule
  time_zone        = "Etc/UTC"
  attempt_deadline = "600s"

  retry_config {
    # A partition whose rows are still in the streaming buffer is refused for now (503): retry.
    retry_count          = 3
    min_backoff_duration = "600s"
    max_backoff_duration = "3600s"
  }

  http_target {
    http_method = "POST"
    uri         = "${module.function["table-manager"].uri}/compact"
    headers     = { "Content-Type" = "application/json" }
    body        = base64encode("{}")

    oidc_token {
      service_account_email = google_service_account.scheduler.email
      audience              = module.function["table-manager"].uri
    }
  }

  depends_on = [
    google_project_service.scheduler,
    google_cloud_run_v2_service_iam_member.scheduler_invokes_table_manager,
  ]
}
