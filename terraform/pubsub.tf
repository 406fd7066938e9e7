# Topics, and the push subscriptions that deliver them to the functions.
#
# Dead-lettering: Eventarc creates its own subscription for a Pub/Sub trigger and that
# subscription cannot be given a dead-letter policy through the trigger resource, so after the
# last retry a message would be dropped. Pulse therefore delivers Pub/Sub sources through push
# subscriptions it owns: each has a dead_letter_policy (to the dead-letter topic), a retry_policy
# (exponential backoff) and an OIDC token from a dedicated push identity. The functions accept a
# plain Pub/Sub push body as well as a CloudEvent (shared/src/envelope.rs). docs/deploy.md says more.

locals {
  raw_topic         = "${var.name_prefix}-events-raw"
  processed_topic   = "${var.name_prefix}-events-processed"
  dead_letter_topic = "${var.name_prefix}-events-dead-letter"

  # Function => the topic it is pushed from, and an optional filter.
  push = {
    preprocess = {
      topic  = google_pubsub_topic.raw.id
      filter = ""
    }
    table-manager = {
      topic  = google_pubsub_topic.processed.id
      filter = ""
    }
    inference = {
      topic = google_pubsub_topic.processed.id
      filter = join(" OR ", [
        for t in var.scored_event_types : "attributes.event_type = \"${t}\""
      ])
    }
  }

  # The audience the push OIDC token carries; Cloud Run accepts it (custom_audiences) and the
  # function checks it (PULSE_PUSH_AUDIENCE). Fixed, so it does not depend on the service URL.
  push_audience = { for f in keys(local.push) : f => "${var.name_prefix}-${f}-push" }
}

resource "google_pubsub_topic" "raw" {
  #checkov:skip=CKV_GCP_83:Google-managed encryption is the choice for event data here; set kms_key_name to use CMEK.
  project                    = var.project
  name                       = local.raw_topic
  labels                     = local.labels
  message_retention_duration = "86400s"

  depends_on = [google_project_service.enabled]
}

resource "google_pubsub_topic" "processed" {
  #checkov:skip=CKV_GCP_83:Google-managed encryption is the choice for event data here; set kms_key_name to use CMEK.
  project                    = var.project
  name                       = local.processed_topic
  labels                     = local.labels
  message_retention_duration = "86400s"

  depends_on = [google_project_service.enabled]
}

resource "google_pubsub_topic" "dead_letter" {
  #checkov:skip=CKV_GCP_83:Google-managed encryption is the choice for event data here; set kms_key_name to use CMEK.
  project = var.project
  name    = local.dead_letter_topic
  labels  = local.labels

  depends_on = [google_project_service.enabled]
}

# Holds what Pub/Sub gave up on, for 7 days (Pub/Sub's maximum), so it can be inspected and
# re-published; the dead-letter alert fires on the first message.
resource "google_pubsub_subscription" "dead_letter_hold" {
  project                    = var.project
  name                       = "${local.dead_letter_topic}-hold"
  topic                      = google_pubsub_topic.dead_letter.id
  labels                     = local.labels
  message_retention_duration = "604800s"
  retain_acked_messages      = true
  ack_deadline_seconds       = 60

  expiration_policy {
    ttl = ""
  }
}

# The identity Pub/Sub signs push requests as.
resource "google_service_account" "push" {
  project      = var.project
  account_id   = "${var.name_prefix}-push"
  display_name = "Pulse Pub/Sub push"
  description  = "Signs the OIDC token on Pub/Sub pushes to the Pulse functions; may only invoke them."
}

resource "google_pubsub_subscription" "push" {
  for_each = local.push

  project              = var.project
  name                 = "${var.name_prefix}-${each.key}-push"
  topic                = each.value.topic
  filter               = each.value.filter
  labels               = local.labels
  ack_deadline_seconds = 600
  # Keep unacknowledged messages for 7 days; with the retry policy below they are retried
  # until max_delivery_attempts, then dead-lettered.
  message_retention_duration = "604800s"

  push_config {
    push_endpoint = "${module.function[each.key].uri}/"
    oidc_token {
      service_account_email = google_service_account.push.email
      audience              = local.push_audience[each.key]
    }
  }

  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter.id
    max_delivery_attempts = var.max_delivery_attempts
  }

  expiration_policy {
    ttl = ""
  }

  depends_on = [
    google_pubsub_topic_iam_member.agent_publishes_dead_letters,
    google_service_account_iam_member.agent_signs_push_tokens,
  ]
}

# The Pub/Sub service agent forwards to the dead-letter topic and acknowledges on the source
# subscription; without both roles dead-lettering silently does not happen.
resource "google_pubsub_topic_iam_member" "agent_publishes_dead_letters" {
  project = var.project
  topic   = google_pubsub_topic.dead_letter.name
  role    = "roles/pubsub.publisher"
  member  = local.pubsub_agent
}

resource "google_pubsub_subscription_iam_member" "agent_acks_dead_lettered" {
  for_each = google_pubsub_subscription.push

  project      = var.project
  subscription = each.value.name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_agent
}

# The Pub/Sub service agent mints the push identity's OIDC tokens.
resource "google_service_account_iam_member" "agent_signs_push_tokens" {
  service_account_id = google_service_account.push.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_agent
}
