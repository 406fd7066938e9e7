# Insight: every SQL file of views/ becomes a curated view, rendered for BigQuery with nothing of
# the template left (those over event tables wait for var.event_table_views); the monitoring
# dashboard charts this deployment's services and subscriptions; each view has a Looker Studio
# link.

mock_provider "google" {}

run "views_over_event_tables_wait_for_the_flag" {
  command = plan

  assert {
    condition     = toset(keys(google_bigquery_table.views)) == toset(["predictions_daily"])
    error_message = "only the view over Terraform's own predictions table is created before the event tables exist"
  }
}

run "every_sql_file_is_a_rendered_view" {
  command = plan

  variables {
    event_table_views = true
  }

  assert {
    condition     = toset(keys(google_bigquery_table.views)) == toset(["orders_hourly", "inventory_movement", "customer_summary", "activity_funnel", "device_anomalies", "predictions_daily"])
    error_message = "each file of terraform/views/ is one view"
  }
  assert {
    condition     = alltrue([for v in google_bigquery_table.views : length(regexall("[$][{]", v.view[0].query)) == 0 && strcontains(v.view[0].query, "`pulse-test.pulse`.")])
    error_message = "every template variable is filled and tables are qualified by project and dataset"
  }
  assert {
    condition     = strcontains(google_bigquery_table.views["orders_hourly"].view[0].query, "TIMESTAMP_TRUNC(e.timestamp, HOUR)")
    error_message = "the BigQuery spelling of views/dialects.json is used"
  }
  assert {
    condition     = google_bigquery_table.views["orders_hourly"].description == "Orders per hour: count, revenue and distinct customers (each event counted once)."
    error_message = "a view's description is its file's first line"
  }
}

run "the_dashboard_and_report_links_name_this_deployment" {
  command = apply

  assert {
    condition     = length(jsondecode(google_monitoring_dashboard.pulse.dashboard_json).mosaicLayout.tiles) == 9
    error_message = "one tile per chart"
  }
  assert {
    condition     = google_logging_metric.freshness.value_extractor == "EXTRACT(jsonPayload.freshnessMillis)" && google_logging_metric.freshness.label_extractors["table"] == "EXTRACT(jsonPayload.table)"
    error_message = "the freshness metric reads the fields shared/src/metrics.rs logs (camelCase, as tracing-stackdriver writes them)"
  }
  assert {
    condition     = google_monitoring_alert_policy.pulse["freshness"].conditions[0].condition_threshold[0].threshold_value == 120000
    error_message = "the freshness alert fires above var.freshness_alert_seconds"
  }
  assert {
    condition     = alltrue([for tile in jsondecode(google_monitoring_dashboard.pulse.dashboard_json).mosaicLayout.tiles : strcontains(tile.widget.xyChart.dataSets[0].timeSeriesQuery.timeSeriesFilter.filter, "metric.type = ")])
    error_message = "every chart has a metric filter"
  }
  assert {
    condition     = strcontains(output.looker_studio_report_urls["orders_hourly"], "ds.ds0.projectId=pulse-test&ds.ds0.datasetId=pulse&ds.ds0.tableId=orders_hourly")
    error_message = "the report link opens the view in this project's dataset"
  }
}
