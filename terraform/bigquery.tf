# The dataset. Event tables (orders, inventory, user_activity, device_telemetry, and any new type)
# and their deduplicated views `unique_<table>` are created and evolved by table-manager; the
# predictions table, its view `unique_predictions` and the curated views for Looker Studio are
# Terraform's. Queries read each event once: BigQuery drops repeated `insertId`s only for about a
# minute, so a table may hold an event twice until compaction (docs/delivery.md).

resource "google_bigquery_dataset" "pulse" {
  #checkov:skip=CKV_GCP_81:Google-managed encryption is the choice here; add default_encryption_configuration for CMEK.
  project                    = var.project
  dataset_id                 = var.dataset_id
  location                   = var.dataset_location
  description                = "Pulse events (one table per event type), predictions and curated views."
  labels                     = local.labels
  delete_contents_on_destroy = false

  depends_on = [google_project_service.enabled]
}

resource "google_bigquery_table" "predictions" {
  #checkov:skip=CKV_GCP_80:Google-managed encryption is the choice here, as for the dataset.
  project             = var.project
  dataset_id          = google_bigquery_dataset.pulse.dataset_id
  table_id            = "predictions"
  description         = "One row per scored event (inference), with the model that scored it."
  deletion_protection = var.deletion_protection
  labels              = local.labels
  clustering          = ["event_type", "model"]

  time_partitioning {
    type  = "DAY"
    field = "event_date"
  }

  schema = jsonencode([
    { name = "event_id", type = "STRING", mode = "REQUIRED", description = "The scored event." },
    { name = "event_type", type = "STRING", mode = "REQUIRED", description = "Its type." },
    { name = "event_date", type = "DATE", mode = "REQUIRED", description = "Its event date (partition)." },
    { name = "score", type = "FLOAT", mode = "NULLABLE", description = "The model's score, when it gives one." },
    { name = "label", type = "STRING", mode = "NULLABLE", description = "The model's label, when it gives one." },
    { name = "model", type = "STRING", mode = "NULLABLE", description = "Model that answered." },
    { name = "model_version", type = "STRING", mode = "NULLABLE", description = "Its version id." },
    { name = "latency_ms", type = "FLOAT", mode = "NULLABLE", description = "Time the predict call took." },
    { name = "predicted_at", type = "TIMESTAMP", mode = "REQUIRED", description = "When the prediction was made." },
  ])
}

# Each scored event once, its first prediction: the same query inference uses when it creates the
# view itself (shared/src/warehouse/dedup.rs). In the same apply as the table it reads.
resource "google_bigquery_table" "unique_predictions" {
  #checkov:skip=CKV_GCP_80:A view stores no data of its own to encrypt.
  project             = var.project
  dataset_id          = google_bigquery_dataset.pulse.dataset_id
  table_id            = "unique_predictions"
  description         = "`predictions` with each event_id once (its first row by predicted_at); query this, not the table."
  deletion_protection = var.deletion_protection
  labels              = local.labels

  view {
    query          = "SELECT * FROM `${var.project}.${var.dataset_id}.${google_bigquery_table.predictions.table_id}` WHERE TRUE QUALIFY ROW_NUMBER() OVER (PARTITION BY event_id ORDER BY predicted_at NULLS LAST) = 1"
    use_legacy_sql = false
  }
}

locals {
  dataset_ref = "`${var.project}.${var.dataset_id}`"

  # The curated views: one SQL file each under views/, shared with the local stack, which renders
  # the same files for DuckDB (shared/src/views.rs). A file's first line is `-- <description>`;
  # what the dialects write differently is a template variable from views/dialects.json.
  view_variables = merge(
    jsondecode(file("${path.module}/views/dialects.json")).bigquery,
    { dataset = local.dataset_ref },
  )
  curated_views = {
    for file_name in fileset("${path.module}/views", "*.sql") : trimsuffix(file_name, ".sql") => {
      description = trimprefix(split("\n", file("${path.module}/views/${file_name}"))[0], "-- ")
      query       = templatefile("${path.module}/views/${file_name}", local.view_variables)
    }
  }

  # Views over Terraform's own table are always created. The others read the event tables,
  # which table-manager creates on the first event of each type (a view over a missing table
  # cannot be created): see var.event_table_views.
  prediction_views = { for name, view in local.curated_views : name => view if name == "predictions_daily" }
  event_views      = { for name, view in local.curated_views : name => view if name != "predictions_daily" }

  views = merge(local.prediction_views, var.event_table_views ? local.event_views : {})
}

resource "google_bigquery_table" "views" {
  #checkov:skip=CKV_GCP_80:A view stores no data of its own to encrypt.
  for_each = local.views

  project             = var.project
  dataset_id          = google_bigquery_dataset.pulse.dataset_id
  table_id            = each.key
  description         = each.value.description
  deletion_protection = var.deletion_protection
  labels              = local.labels

  view {
    query          = each.value.query
    use_legacy_sql = false
  }

  depends_on = [google_bigquery_table.predictions, google_bigquery_table.unique_predictions]
}
