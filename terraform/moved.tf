# Earlier addresses of resources that are now instances of one resource with for_each: applying
# over a deployment made with those addresses moves each to its key instead of destroying it and
# creating it again.

moved {
  from = google_monitoring_alert_policy.backlog_age
  to   = google_monitoring_alert_policy.pulse["backlog_age"]
}

moved {
  from = google_monitoring_alert_policy.dead_lettered
  to   = google_monitoring_alert_policy.pulse["dead_lettered"]
}

moved {
  from = google_monitoring_alert_policy.server_errors
  to   = google_monitoring_alert_policy.pulse["server_errors"]
}

moved {
  from = google_monitoring_alert_policy.function_dead_letters
  to   = google_monitoring_alert_policy.pulse["function_dead_letters"]
}

moved {
  from = google_monitoring_alert_policy.failed_loads
  to   = google_monitoring_alert_policy.pulse["failed_loads"]
}

moved {
  from = google_monitoring_alert_policy.freshness
  to   = google_monitoring_alert_policy.pulse["freshness"]
}

moved {
  from = google_logging_metric.dead_letters
  to   = google_logging_metric.counters["dead_letters"]
}

moved {
  from = google_logging_metric.quarantined_files
  to   = google_logging_metric.counters["quarantined_files"]
}

moved {
  from = google_logging_metric.failed_load_jobs
  to   = google_logging_metric.counters["failed_load_jobs"]
}

moved {
  from = google_storage_bucket_iam_member.preprocess_raw_create
  to   = google_storage_bucket_iam_member.raw_writers["preprocess"]
}

moved {
  from = google_storage_bucket_iam_member.dead_letter_writers["table-manager"]
  to   = google_storage_bucket_iam_member.raw_writers["table-manager"]
}

moved {
  from = google_storage_bucket_iam_member.dead_letter_writers["inference"]
  to   = google_storage_bucket_iam_member.raw_writers["inference"]
}

moved {
  from = google_storage_bucket_iam_member.preprocess_raw_read
  to   = google_storage_bucket_iam_member.raw_readers["preprocess"]
}

moved {
  from = google_storage_bucket_iam_member.table_manager_raw_read
  to   = google_storage_bucket_iam_member.raw_readers["table-manager"]
}

moved {
  from = google_storage_bucket_iam_member.inference_raw_read
  to   = google_storage_bucket_iam_member.raw_readers["inference"]
}
