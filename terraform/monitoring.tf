# Alerts to the alert email: a backlog that is not draining, anything dead-lettered by Pub/Sub,
# repeated 5xx answers (each one a redelivery) from any function, events the functions themselves
# dead-lettered (answered 200, so invisible to Pub/Sub), Parquet files refused into quarantine,
# BigQuery load jobs that failed, and rows committed later than `freshness_alert_seconds` after
# their events.

locals {
  # The subscriptions that feed the functions: Pulse's push subscriptions, and the one Eventarc
  # creates for the landing trigger (`eventarc-LOCATION-TRIGGER-sub-NNN`). Not the dead-letter
  # hold subscription: nobody acknowledges it, so its backlog is old by design.
  push_subscription_ids       = [for s in google_pubsub_subscription.push : s.name]
  eventarc_subscription_start = "eventarc-${google_eventarc_trigger.landing_finalized.location}-${google_eventarc_trigger.landing_finalized.name}-sub-"
  function_services = concat(
    [for m in module.function : m.service_name],
    [for m in module.predictor : m.service_name],
  )
}

resource "google_monitoring_notification_channel" "email" {
  project      = var.project
  display_name = "Pulse alerts (${var.name_prefix})"
  type         = "email"
  labels = {
    email_address = var.alert_email
  }

  depends_on = [google_project_service.enabled]
}

resource "google_monitoring_alert_policy" "backlog_age" {
  project               = var.project
  display_name          = "${var.name_prefix}: Pub/Sub backlog older than 10 minutes"
  combiner              = "OR"
  severity              = "WARNING"
  notification_channels = [google_monitoring_notification_channel.email.id]
  user_labels           = local.labels

  conditions {
    display_name = "Oldest unacknowledged message age > 600 s (push subscriptions)"
    condition_threshold {
      filter          = "resource.type = \"pubsub_subscription\" AND metric.type = \"pubsub.googleapis.com/subscription/oldest_unacked_message_age\" AND resource.labels.subscription_id = one_of(${join(", ", [for id in local.push_subscription_ids : "\"${id}\""])})"
      comparison      = "COMPARISON_GT"
      threshold_value = 600
      duration        = "300s"
      aggregations {
        alignment_period   = "60s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }

  conditions {
    display_name = "Oldest unacknowledged message age > 600 s (landing trigger)"
    condition_threshold {
      filter          = "resource.type = \"pubsub_subscription\" AND metric.type = \"pubsub.googleapis.com/subscription/oldest_unacked_message_age\" AND resource.labels.subscription_id = starts_with(\"${local.eventarc_subscription_start}\")"
      comparison      = "COMPARISON_GT"
      threshold_value = 600
      duration        = "300s"
      aggregations {
        alignment_period   = "60s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }

  documentation {
    content   = "A Pulse subscription is not draining: its function is failing (see the 5xx alert and the function's logs) or is at max instances. Nothing is lost yet; after ${var.max_delivery_attempts} attempts messages go to ${local.dead_letter_topic}."
    mime_type = "text/markdown"
  }
}

resource "google_monitoring_alert_policy" "dead_lettered" {
  project               = var.project
  display_name          = "${var.name_prefix}: messages dead-lettered by Pub/Sub"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = [google_monitoring_notification_channel.email.id]
  user_labels           = local.labels

  conditions {
    display_name = "Messages published to ${local.dead_letter_topic}"
    condition_threshold {
      filter          = "resource.type = \"pubsub_topic\" AND metric.type = \"pubsub.googleapis.com/topic/send_message_operation_count\" AND resource.labels.topic_id = \"${local.dead_letter_topic}\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_SUM"
      }
    }
  }

  documentation {
    content   = "Pub/Sub gave up delivering messages after ${var.max_delivery_attempts} attempts. They are held for 7 days in ${google_pubsub_subscription.dead_letter_hold.name}: see docs/deploy.md (Dead letters) to inspect and re-publish them."
    mime_type = "text/markdown"
  }
}

resource "google_monitoring_alert_policy" "server_errors" {
  project               = var.project
  display_name          = "${var.name_prefix}: Cloud Run 5xx answers"
  combiner              = "OR"
  severity              = "WARNING"
  notification_channels = [google_monitoring_notification_channel.email.id]
  user_labels           = local.labels

  # A count, not a rate: one file failing on every delivery is retried a few times in ten
  # minutes, far below any per-second rate, and is exactly what must be seen.
  conditions {
    display_name = "5 or more 5xx answers from one service within 10 minutes"
    condition_threshold {
      filter          = "resource.type = \"cloud_run_revision\" AND metric.type = \"run.googleapis.com/request_count\" AND metric.labels.response_code_class = \"5xx\" AND resource.labels.service_name = one_of(${join(", ", [for n in local.function_services : "\"${n}\""])})"
      comparison      = "COMPARISON_GT"
      threshold_value = 4
      duration        = "0s"
      aggregations {
        alignment_period     = "600s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["resource.labels.service_name"]
      }
    }
  }

  documentation {
    content   = "A Pulse function answers 5xx: a backend (Cloud Storage, Pub/Sub, BigQuery, Vertex AI, Cloud SQL) is failing or timing out, and Pub/Sub is redelivering. Check the service's logs."
    mime_type = "text/markdown"
  }
}

# The functions dead-letter what can never succeed and answer 200 (shared/src/deadletter.rs logs
# `reason` and `deadLetter`, the record's name); Pub/Sub never sees those.
resource "google_logging_metric" "dead_letters" {
  project     = var.project
  name        = "${var.name_prefix}/dead_letters"
  description = "Events a Pulse function dead-lettered, by function and reason."
  filter      = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=(${join(" OR ", [for n in local.function_services : "\"${n}\""])}) AND jsonPayload.deadLetter:* AND jsonPayload.reason:*"

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    labels {
      key        = "reason"
      value_type = "STRING"
    }
    labels {
      key        = "service"
      value_type = "STRING"
    }
  }
  label_extractors = {
    reason  = "EXTRACT(jsonPayload.reason)"
    service = "EXTRACT(resource.labels.service_name)"
  }
}

# parquet-loader refuses a bad file into quarantine with a report and answers 200
# (functions/parquet-loader/src/load.rs logs `quarantine`, where it went, and `reason`).
resource "google_logging_metric" "quarantined_files" {
  project     = var.project
  name        = "${var.name_prefix}/quarantined_files"
  description = "Landing files parquet-loader refused into quarantine, by reason."
  filter      = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${module.function["parquet-loader"].service_name}\" AND jsonPayload.quarantine:* AND jsonPayload.reason:*"

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    labels {
      key        = "reason"
      value_type = "STRING"
    }
  }
  label_extractors = {
    reason = "EXTRACT(jsonPayload.reason)"
  }
}

# Event time to committed row, in milliseconds, for each streaming write (shared/src/metrics.rs
# logs `rowsCommitted` and `freshnessMillis`, the write's oldest row): its percentiles are upper
# bounds of the rows' own. Nobody scrapes `/metrics` on Cloud Run, so the log carries it.
resource "google_logging_metric" "freshness" {
  project     = var.project
  name        = "${var.name_prefix}/freshness"
  description = "Milliseconds from an event's timestamp to its row's commit (the oldest row of each write), by table."
  filter      = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=(${join(" OR ", [for n in local.function_services : "\"${n}\""])}) AND jsonPayload.rowsCommitted:* AND jsonPayload.freshnessMillis:*"

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "DISTRIBUTION"
    unit        = "ms"
    labels {
      key        = "table"
      value_type = "STRING"
    }
  }
  value_extractor = "EXTRACT(jsonPayload.freshnessMillis)"
  label_extractors = {
    table = "EXTRACT(jsonPayload.table)"
  }
  # 0.1 s to about 14 hours, doubling.
  bucket_options {
    exponential_buckets {
      num_finite_buckets = 20
      growth_factor      = 2
      scale              = 100
    }
  }
}

# BigQuery's own record of load jobs that ended in error (its data-access audit log, which
# BigQuery always writes), for the loader's identity.
resource "google_logging_metric" "failed_load_jobs" {
  project     = var.project
  name        = "${var.name_prefix}/failed_load_jobs"
  description = "BigQuery load jobs run by parquet-loader that ended in error."
  filter      = "resource.type=\"bigquery_project\" AND protoPayload.authenticationInfo.principalEmail=\"${module.function["parquet-loader"].service_account_email}\" AND protoPayload.metadata.jobChange.after=\"DONE\" AND protoPayload.metadata.jobChange.job.jobConfig.type=\"LOAD\" AND protoPayload.metadata.jobChange.job.jobStatus.errorResult.code:*"

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
  }
}

resource "google_monitoring_alert_policy" "function_dead_letters" {
  project               = var.project
  display_name          = "${var.name_prefix}: events dead-lettered by the functions"
  combiner              = "OR"
  severity              = "WARNING"
  notification_channels = [google_monitoring_notification_channel.email.id]
  user_labels           = local.labels

  conditions {
    display_name = "Dead letters in the last 5 minutes, by function and reason"
    condition_threshold {
      filter          = "resource.type = \"cloud_run_revision\" AND metric.type = \"logging.googleapis.com/user/${google_logging_metric.dead_letters.name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["metric.labels.service", "metric.labels.reason"]
      }
    }
  }

  documentation {
    content   = "A Pulse function could not accept some events and stored them in gs://${google_storage_bucket.raw.name}/${local.dead_letter_prefix}<reason>/ with the reason and detail. Fix the producer or the schema, then re-drive them with preprocess's POST /replay (dead_letter_prefix)."
    mime_type = "text/markdown"
  }
}

resource "google_monitoring_alert_policy" "failed_loads" {
  project               = var.project
  display_name          = "${var.name_prefix}: Parquet loads refused or failed"
  combiner              = "OR"
  severity              = "WARNING"
  notification_channels = [google_monitoring_notification_channel.email.id]
  user_labels           = local.labels

  conditions {
    display_name = "Files quarantined in the last 5 minutes"
    condition_threshold {
      filter          = "resource.type = \"cloud_run_revision\" AND metric.type = \"logging.googleapis.com/user/${google_logging_metric.quarantined_files.name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["metric.labels.reason"]
      }
    }
  }

  conditions {
    display_name = "BigQuery load jobs failed in the last 5 minutes"
    condition_threshold {
      filter          = "resource.type = \"bigquery_project\" AND metric.type = \"logging.googleapis.com/user/${google_logging_metric.failed_load_jobs.name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_SUM"
      }
    }
  }

  documentation {
    content   = "A Parquet file in gs://${google_storage_bucket.landing.name}/${local.landing_prefix} was not loaded. Refused files are in ${local.quarantine_prefix} with an `.error.json` report beside them; a failed BigQuery load job is in the job history of the loader's account. Fix the file and drop it again, or reload it with parquet-loader's POST /load."
    mime_type = "text/markdown"
  }
}

resource "google_monitoring_alert_policy" "freshness" {
  project               = var.project
  display_name          = "${var.name_prefix}: rows committed late"
  combiner              = "OR"
  severity              = "WARNING"
  notification_channels = [google_monitoring_notification_channel.email.id]
  user_labels           = local.labels

  conditions {
    display_name = "Event to row p99 > ${var.freshness_alert_seconds} s for 10 minutes, by table"
    condition_threshold {
      filter          = "resource.type = \"cloud_run_revision\" AND metric.type = \"logging.googleapis.com/user/${google_logging_metric.freshness.name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.freshness_alert_seconds * 1000
      duration        = "600s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_PERCENTILE_99"
        group_by_fields      = ["metric.labels.table"]
      }
    }
  }

  documentation {
    content   = "Rows reach BigQuery more than ${var.freshness_alert_seconds} s after their events' timestamps. Either producers send old events (a replay or a backfill does this, and is expected), or the pipeline is behind: see the backlog chart on the Pulse dashboard and the functions' instance counts."
    mime_type = "text/markdown"
  }
}
