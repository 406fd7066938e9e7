# The dataset. Event tables (orders, inventory, user_activity, device_telemetry, and any new type)
# are created and evolved by table-manager; the predictions table and the curated views for
# Looker Studio are Terraform's.

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

locals {
  dataset_ref = "`${var.project}.${var.dataset_id}`"

  # Views over Terraform's own table: always created.
  prediction_views = {
    predictions_daily = {
      description = "Predictions per day, type and model: count, mean score, p95 latency."
      query       = <<-SQL
        SELECT event_date, event_type, model, model_version,
               COUNT(DISTINCT event_id) AS predictions,
               AVG(score) AS mean_score,
               APPROX_QUANTILES(latency_ms, 100)[OFFSET(95)] AS p95_latency_ms
        FROM ${local.dataset_ref}.predictions
        GROUP BY event_date, event_type, model, model_version
      SQL
    }
  }

  # Views over the event tables, which table-manager creates on the first event of each type
  # (a view over a missing table cannot be created): see var.event_table_views.
  event_views = {
    orders_daily = {
      description = "Orders per day and status: count and revenue (each event counted once)."
      query       = <<-SQL
        SELECT event_date, status,
               COUNT(DISTINCT event_id) AS orders,
               SUM(total_amount) AS revenue
        FROM (
          SELECT * FROM ${local.dataset_ref}.orders
          WHERE TRUE QUALIFY ROW_NUMBER() OVER (PARTITION BY event_id ORDER BY ingested_at) = 1
        )
        GROUP BY event_date, status
      SQL
    }
    user_activity_daily = {
      description = "User activity per day and kind: events and distinct users."
      query       = <<-SQL
        SELECT event_date, activity_type,
               COUNT(DISTINCT event_id) AS events,
               COUNT(DISTINCT user_id) AS users
        FROM ${local.dataset_ref}.user_activity
        GROUP BY event_date, activity_type
      SQL
    }
    device_readings_scored = {
      description = "Device readings with their anomaly score, when inference scored them."
      query       = <<-SQL
        SELECT t.event_date, t.timestamp, t.device_id, t.sensor_type, t.reading, t.unit,
               p.score, p.label, p.model, p.model_version
        FROM ${local.dataset_ref}.device_telemetry AS t
        LEFT JOIN ${local.dataset_ref}.predictions AS p
          ON p.event_id = t.event_id AND p.event_date = t.event_date
        WHERE TRUE
        QUALIFY ROW_NUMBER() OVER (PARTITION BY t.event_id ORDER BY p.predicted_at DESC) = 1
      SQL
    }
  }

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

  depends_on = [google_bigquery_table.predictions]
}
