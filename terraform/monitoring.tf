# Alerts to the alert email: a backlog that is not draining, anything dead-lettered by Pub/Sub,
# and a sustained rate of 5xx answers (each one a redelivery) from any function.

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
    display_name = "Oldest unacknowledged message age > 600 s"
    condition_threshold {
      filter          = "resource.type = \"pubsub_subscription\" AND metric.type = \"pubsub.googleapis.com/subscription/oldest_unacked_message_age\" AND resource.labels.subscription_id = starts_with(\"${var.name_prefix}-\")"
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
  display_name          = "${var.name_prefix}: Cloud Run 5xx rate"
  combiner              = "OR"
  severity              = "WARNING"
  notification_channels = [google_monitoring_notification_channel.email.id]
  user_labels           = local.labels

  conditions {
    display_name = "5xx answers > 1 per second for 5 minutes"
    condition_threshold {
      filter          = "resource.type = \"cloud_run_revision\" AND metric.type = \"run.googleapis.com/request_count\" AND metric.labels.response_code_class = \"5xx\" AND resource.labels.service_name = starts_with(\"${var.name_prefix}-\")"
      comparison      = "COMPARISON_GT"
      threshold_value = 1
      duration        = "300s"
      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_RATE"
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
