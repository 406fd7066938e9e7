# The Cloud Monitoring dashboard of a Pulse deployment, from what Google Cloud measures itself:
# Cloud Run requests (by function and answer class) and latency, instances, the Pub/Sub backlog
# and its age (how far the pipeline is behind), messages that Pub/Sub dead-lettered, and rows
# streamed into BigQuery per table; and from the functions' logs (monitoring.tf's log-based
# metrics), freshness per table and the events they dead-lettered by reason. The functions' own
# Prometheus metrics (`GET /metrics`) are for a scraper; see README "Dashboard and metrics".
# And a Looker Studio report per curated view, as Linking API URLs.

locals {
  run_filter = "resource.type = \"cloud_run_revision\" AND resource.labels.service_name = starts_with(\"${var.name_prefix}-\")"
  sub_filter = "resource.type = \"pubsub_subscription\" AND resource.labels.subscription_id = starts_with(\"${var.name_prefix}-\")"

  # One line chart: a title, a metric filter, how to align each series and how to combine them.
  dashboard_charts = [
    {
      title   = "Requests per second, by function and answer class"
      filter  = "metric.type = \"run.googleapis.com/request_count\" AND ${local.run_filter}"
      aligner = "ALIGN_RATE"
      reducer = "REDUCE_SUM"
      group   = ["resource.label.service_name", "metric.label.response_code_class"]
    },
    {
      title   = "Request latency p99, by function (ms)"
      filter  = "metric.type = \"run.googleapis.com/request_latencies\" AND ${local.run_filter}"
      aligner = "ALIGN_PERCENTILE_99"
      reducer = "REDUCE_MAX"
      group   = ["resource.label.service_name"]
    },
    {
      title   = "Instances, by function"
      filter  = "metric.type = \"run.googleapis.com/container/instance_count\" AND ${local.run_filter}"
      aligner = "ALIGN_MAX"
      reducer = "REDUCE_SUM"
      group   = ["resource.label.service_name"]
    },
    {
      title   = "Oldest unacknowledged message, by subscription (s)"
      filter  = "metric.type = \"pubsub.googleapis.com/subscription/oldest_unacked_message_age\" AND ${local.sub_filter}"
      aligner = "ALIGN_MAX"
      reducer = "REDUCE_MAX"
      group   = ["resource.label.subscription_id"]
    },
    {
      title   = "Undelivered messages, by subscription"
      filter  = "metric.type = \"pubsub.googleapis.com/subscription/num_undelivered_messages\" AND ${local.sub_filter}"
      aligner = "ALIGN_MAX"
      reducer = "REDUCE_SUM"
      group   = ["resource.label.subscription_id"]
    },
    {
      title   = "Messages dead-lettered by Pub/Sub"
      filter  = "metric.type = \"pubsub.googleapis.com/topic/send_message_operation_count\" AND resource.type = \"pubsub_topic\" AND resource.labels.topic_id = \"${local.dead_letter_topic}\""
      aligner = "ALIGN_RATE"
      reducer = "REDUCE_SUM"
      group   = []
    },
    {
      title   = "Rows streamed into BigQuery per second, by table"
      filter  = "metric.type = \"bigquery.googleapis.com/storage/uploaded_row_count\" AND resource.type = \"bigquery_dataset\" AND resource.labels.dataset_id = \"${var.dataset_id}\""
      aligner = "ALIGN_RATE"
      reducer = "REDUCE_SUM"
      group   = ["metric.label.table"]
    },
    {
      title   = "Freshness: event to row p99, by table (ms)"
      filter  = "metric.type = \"logging.googleapis.com/user/${google_logging_metric.freshness.name}\" AND resource.type = \"cloud_run_revision\""
      aligner = "ALIGN_DELTA"
      reducer = "REDUCE_PERCENTILE_99"
      group   = ["metric.label.table"]
    },
    {
      title   = "Events dead-lettered by the functions, by reason"
      filter  = "metric.type = \"logging.googleapis.com/user/${google_logging_metric.counters["dead_letters"].name}\" AND resource.type = \"cloud_run_revision\""
      aligner = "ALIGN_SUM"
      reducer = "REDUCE_SUM"
      group   = ["metric.label.reason"]
    },
  ]

  dashboard = {
    displayName = "Pulse (${var.name_prefix})"
    mosaicLayout = {
      columns = 12
      tiles = [
        for index, chart in local.dashboard_charts : {
          xPos   = (index % 2) * 6
          yPos   = floor(index / 2) * 4
          width  = 6
          height = 4
          widget = {
            title = chart.title
            xyChart = {
              dataSets = [{
                plotType = "LINE"
                timeSeriesQuery = {
                  timeSeriesFilter = {
                    filter = chart.filter
                    aggregation = {
                      alignmentPeriod    = "60s"
                      perSeriesAligner   = chart.aligner
                      crossSeriesReducer = chart.reducer
                      groupByFields      = chart.group
                    }
                  }
                }
              }]
            }
          }
        }
      ]
    }
  }

  # Looker Studio's Linking API: a new report over one curated view (the viewer needs read
  # access to the dataset; the report is saved to their account when they choose to).
  looker_studio_urls = {
    for name in keys(local.curated_views) : name => join("&", [
      "https://lookerstudio.google.com/reporting/create?c.mode=edit",
      "r.reportName=${urlencode("Pulse: ${name}")}",
      "ds.ds0.connector=bigQuery",
      "ds.ds0.type=TABLE",
      "ds.ds0.projectId=${var.project}",
      "ds.ds0.datasetId=${var.dataset_id}",
      "ds.ds0.tableId=${name}",
      "ds.ds0.datasourceName=${urlencode("Pulse ${name}")}",
    ])
  }
}

resource "google_monitoring_dashboard" "pulse" {
  project        = var.project
  dashboard_json = jsonencode(local.dashboard)

  depends_on = [google_project_service.enabled]
}

output "monitoring_dashboard" {
  description = "The Cloud Monitoring dashboard's resource id (Monitoring > Dashboards in the console)."
  value       = google_monitoring_dashboard.pulse.id
}

output "looker_studio_report_urls" {
  description = "Per curated view, a Looker Studio Linking API URL that opens a new report over it (the views over event tables exist once var.event_table_views is on)."
  value       = local.looker_studio_urls
}
