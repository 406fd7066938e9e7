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
  # The log entries of every Pulse function.
  function_logs = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=(${join(" OR ", [for n in local.function_services : "\"${n}\""])})"
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

locals {
  # Log entries counted as they come, by the labels each one's fields give.
  log_counters = {
    # The functions dead-letter what can never succeed and answer 200 (shared/src/deadletter.rs
    # logs `reason` and `deadLetter`, the record's name); Pub/Sub never sees those.
    dead_letters = {
      description = "Events a Pulse function dead-lettered, by function and reason."
      filter      = "${local.function_logs} AND jsonPayload.deadLetter:* AND jsonPayload.reason:*"
      labels = {
        reason  = "EXTRACT(jsonPayload.reason)"
        service = "EXTRACT(resource.labels.service_name)"
      }
    }
    # parquet-loader refuses a bad file into quarantine with a report and answers 200
    # (functions/parquet-loader/src/load.rs logs `quarantine`, where it went, and `reason`).
    quarantined_files = {
      description = "Landing files parquet-loader refused into quarantine, by reason."
      filter      = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${module.function["parquet-loader"].service_name}\" AND jsonPayload.quarantine:* AND jsonPayload.reason:*"
      labels = {
        reason = "EXTRACT(jsonPayload.reason)"
      }
    }
    # BigQuery's own record of load jobs that ended in error (its data-access audit log, which
    # BigQuery always writes), for the loader's identity.
    failed_load_jobs = {
      description = "BigQuery load jobs run by parquet-loader that ended in error."
      filter      = "resource.type=\"bigquery_project\" AND protoPayload.authenticationInfo.principalEmail=\"${module.function["parquet-loader"].service_account_email}\" AND protoPayload.metadata.jobChange.after=\"DONE\" AND protoPayload.metadata.jobChange.job.jobConfig.type=\"LOAD\" AND protoPayload.metadata.jobChange.job.jobStatus.errorResult.code:*"
      labels      = {}
    }
  }
}

resource "google_logging_metric" "counters" {
  for_each = local.log_counters

  project     = var.project
  name        = "${var.name_prefix}/${each.key}"
  description = each.value.description
  filter      = each.value.filter

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    dynamic "labels" {
      for_each = each.value.labels
      content {
        key        = labels.key
        value_type = "STRING"
      }
    }
  }
  # None at all, not an empty map, for a counter without labels.
  label_extractors = length(each.value.labels) > 0 ? each.value.labels : null
}

# Event time to committed row, in milliseconds, for each streaming write (shared/src/metrics.rs
# logs `rowsCommitted` and `freshnessMillis`, the write's oldest row): its percentiles are upper
# bounds of the rows' own. Nobody scrapes `/metrics` on Cloud Run, so the log carries it.
resource "google_logging_metric" "freshness" {
  project     = var.project
  name        = "${var.name_prefix}/freshness"
  description = "Milliseconds from an event's timestamp to its row's commit (the oldest row of each write), by table."
  filter      = "${local.function_logs} AND jsonPayload.rowsCommitted:* AND jsonPayload.freshnessMillis:*"

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

locals {
  # The alert policies, by what each watches. A policy goes to the email channel and fires when
  # any of its conditions does: a series above `threshold` for `duration`, each series aligned
  # over `period` with `aligner` and, where there is a `reducer`, combined by the `group` labels.
  alerts = {
    backlog_age = {
      title    = "Pub/Sub backlog older than 10 minutes"
      severity = "WARNING"
      conditions = [
        {
          title     = "Oldest unacknowledged message age > 600 s (push subscriptions)"
          filter    = "resource.type = \"pubsub_subscription\" AND metric.type = \"pubsub.googleapis.com/subscription/oldest_unacked_message_age\" AND resource.labels.subscription_id = one_of(${join(", ", [for id in local.push_subscription_ids : "\"${id}\""])})"
          threshold = 600
          duration  = "300s"
          period    = "60s"
          aligner   = "ALIGN_MAX"
        },
        {
          title     = "Oldest unacknowledged message age > 600 s (landing trigger)"
          filter    = "resource.type = \"pubsub_subscription\" AND metric.type = \"pubsub.googleapis.com/subscription/oldest_unacked_message_age\" AND resource.labels.subscription_id = starts_with(\"${local.eventarc_subscription_start}\")"
          threshold = 600
          duration  = "300s"
          period    = "60s"
          aligner   = "ALIGN_MAX"
        },
      ]
      documentation = "A Pulse subscription is not draining: its function is failing (see the 5xx alert and the function's logs) or is at max instances. Nothing is lost yet; after ${var.max_delivery_attempts} attempts messages go to ${local.dead_letter_topic}."
    }

    dead_lettered = {
      title    = "messages dead-lettered by Pub/Sub"
      severity = "ERROR"
      conditions = [{
        title     = "Messages published to ${local.dead_letter_topic}"
        filter    = "resource.type = \"pubsub_topic\" AND metric.type = \"pubsub.googleapis.com/topic/send_message_operation_count\" AND resource.labels.topic_id = \"${local.dead_letter_topic}\""
        threshold = 0
        duration  = "0s"
        period    = "300s"
        aligner   = "ALIGN_SUM"
      }]
      documentation = "Pub/Sub gave up delivering messages after ${var.max_delivery_attempts} attempts. They are held for 7 days in ${google_pubsub_subscription.dead_letter_hold.name}: see docs/deploy.md (Dead letters) to inspect and re-publish them."
    }

    server_errors = {
      title    = "Cloud Run 5xx answers"
      severity = "WARNING"
      # A count, not a rate: one file failing on every delivery is retried a few times in ten
      # minutes, far below any per-second rate, and is exactly what must be seen.
      conditions = [{
        title     = "5 or more 5xx answers from one service within 10 minutes"
        filter    = "resource.type = \"cloud_run_revision\" AND metric.type = \"run.googleapis.com/request_count\" AND metric.labels.response_code_class = \"5xx\" AND resource.labels.service_name = one_of(${join(", ", [for n in local.function_services : "\"${n}\""])})"
        threshold = 4
        duration  = "0s"
        period    = "600s"
        aligner   = "ALIGN_SUM"
        reducer   = "REDUCE_SUM"
        group     = ["resource.labels.service_name"]
      }]
      documentation = "A Pulse function answers 5xx: a backend (Cloud Storage, Pub/Sub, BigQuery, Vertex AI, Cloud SQL) is failing or timing out, and Pub/Sub is redelivering. Check the service's logs."
    }

    function_dead_letters = {
      title    = "events dead-lettered by the functions"
      severity = "WARNING"
      conditions = [{
        title     = "Dead letters in the last 5 minutes, by function and reason"
        filter    = "resource.type = \"cloud_run_revision\" AND metric.type = \"logging.googleapis.com/user/${google_logging_metric.counters["dead_letters"].name}\""
        threshold = 0
        duration  = "0s"
        period    = "300s"
        aligner   = "ALIGN_SUM"
        reducer   = "REDUCE_SUM"
        group     = ["metric.labels.service", "metric.labels.reason"]
      }]
      documentation = "A Pulse function could not accept some events and stored them in gs://${google_storage_bucket.raw.name}/${local.dead_letter_prefix}<reason>/ with the reason and detail. Fix the producer or the schema, then re-drive them with preprocess's POST /replay (dead_letter_prefix)."
    }

    failed_loads = {
      title    = "Parquet loads refused or failed"
      severity = "WARNING"
      conditions = [
        {
          title     = "Files quarantined in the last 5 minutes"
          filter    = "resource.type = \"cloud_run_revision\" AND metric.type = \"logging.googleapis.com/user/${google_logging_metric.counters["quarantined_files"].name}\""
          threshold = 0
          duration  = "0s"
          period    = "300s"
          aligner   = "ALIGN_SUM"
          reducer   = "REDUCE_SUM"
          group     = ["metric.labels.reason"]
        },
        {
          title     = "BigQuery load jobs failed in the last 5 minutes"
          filter    = "resource.type = \"bigquery_project\" AND metric.type = \"logging.googleapis.com/user/${google_logging_metric.counters["failed_load_jobs"].name}\""
          threshold = 0
          duration  = "0s"
          period    = "300s"
          aligner   = "ALIGN_SUM"
        },
      ]
      documentation = "A Parquet file in gs://${google_storage_bucket.landing.name}/${local.landing_prefix} was not loaded. Refused files are in ${local.quarantine_prefix} with an `.error.json` report beside them; a failed BigQuery load job is in the job history of the loader's account. Fix the file and drop it again, or reload it with parquet-loader's POST /load."
    }

    freshness = {
      title    = "rows committed late"
      severity = "WARNING"
      conditions = [{
        title     = "Event to row p99 > ${var.freshness_alert_seconds} s for 10 minutes, by table"
        filter    = "resource.type = \"cloud_run_revision\" AND metric.type = \"logging.googleapis.com/user/${google_logging_metric.freshness.name}\""
        threshold = var.freshness_alert_seconds * 1000
        duration  = "600s"
        period    = "300s"
        aligner   = "ALIGN_DELTA"
        reducer   = "REDUCE_PERCENTILE_99"
        group     = ["metric.labels.table"]
      }]
      documentation = "Rows reach BigQuery more than ${var.freshness_alert_seconds} s after their events' timestamps. Either producers send old events (a replay or a backfill does this, and is expected), or the pipeline is behind: see the backlog chart on the Pulse dashboard and the functions' instance counts."
    }
  }
}

resource "google_monitoring_alert_policy" "pulse" {
  for_each = local.alerts

  project               = var.project
  display_name          = "${var.name_prefix}: ${each.value.title}"
  combiner              = "OR"
  severity              = each.value.severity
  notification_channels = [google_monitoring_notification_channel.email.id]
  user_labels           = local.labels

  dynamic "conditions" {
    for_each = each.value.conditions
    content {
      display_name = conditions.value.title
      condition_threshold {
        filter          = conditions.value.filter
        comparison      = "COMPARISON_GT"
        threshold_value = conditions.value.threshold
        duration        = conditions.value.duration
        aggregations {
          alignment_period     = conditions.value.period
          per_series_aligner   = conditions.value.aligner
          cross_series_reducer = try(conditions.value.reducer, null)
          group_by_fields      = try(conditions.value.group, null)
        }
      }
    }
  }

  documentation {
    content   = each.value.documentation
    mime_type = "text/markdown"
  }
}
