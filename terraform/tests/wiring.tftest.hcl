# The wiring, checked offline against a mocked google provider: every function has a service,
# its own account and a way in; nothing is public; the raw archive has its lifecycle; nothing
# Pub/Sub gives up on is dropped.

mock_provider "google" {}

variables {
  project     = "pulse-test"
  region      = "europe-west1"
  alert_email = "alerts@example.com"
  operators   = ["group:data-eng@example.com"]
  images = {
    preprocess        = "europe-west1-docker.pkg.dev/pulse-test/pulse/preprocess@sha256:0000000000000000000000000000000000000000000000000000000000000001"
    "table-manager"   = "europe-west1-docker.pkg.dev/pulse-test/pulse/table-manager@sha256:0000000000000000000000000000000000000000000000000000000000000002"
    "parquet-loader"  = "europe-west1-docker.pkg.dev/pulse-test/pulse/parquet-loader@sha256:0000000000000000000000000000000000000000000000000000000000000003"
    inference         = "europe-west1-docker.pkg.dev/pulse-test/pulse/inference@sha256:0000000000000000000000000000000000000000000000000000000000000004"
    "event-generator" = "europe-west1-docker.pkg.dev/pulse-test/pulse/event-generator@sha256:0000000000000000000000000000000000000000000000000000000000000005"
  }
}

run "every_function_has_a_service_an_account_and_a_trigger" {
  command = apply

  assert {
    condition     = toset(keys(module.function)) == toset(["preprocess", "table-manager", "parquet-loader", "inference", "event-generator"])
    error_message = "all five functions must be deployed"
  }
  assert {
    condition     = alltrue([for f, m in module.function : m.service_name == "pulse-${f}" && m.service_account_email != ""])
    error_message = "each function needs its own service and service account"
  }
  assert {
    condition     = length(distinct([for m in module.function : m.service_account_email])) == 5
    error_message = "no two functions may share a service account"
  }
  assert {
    condition     = toset(keys(google_pubsub_subscription.push)) == toset(["preprocess", "table-manager", "inference"])
    error_message = "preprocess, table-manager and inference are each fed by a push subscription"
  }
  assert {
    condition     = google_pubsub_subscription.push["preprocess"].topic == google_pubsub_topic.raw.id
    error_message = "preprocess reads the raw topic"
  }
  assert {
    condition     = google_pubsub_subscription.push["table-manager"].topic == google_pubsub_topic.processed.id && google_pubsub_subscription.push["inference"].topic == google_pubsub_topic.processed.id
    error_message = "table-manager and inference read the processed topic"
  }
  assert {
    condition     = google_pubsub_subscription.push["inference"].filter == "attributes.event_type = \"device_telemetry\" OR attributes.event_type = \"user_activity\""
    error_message = "inference only receives the scored event types"
  }
  assert {
    condition     = alltrue([for f, s in google_pubsub_subscription.push : s.push_config[0].push_endpoint == "${module.function[f].uri}/"])
    error_message = "each push subscription targets its own function"
  }
  assert {
    condition     = google_eventarc_trigger.landing_finalized.destination[0].cloud_run_service[0].service == module.function["parquet-loader"].service_name
    error_message = "parquet-loader is triggered by the landing bucket"
  }
  assert {
    condition = toset([for c in google_eventarc_trigger.landing_finalized.matching_criteria : "${c.attribute}=${c.value}"]) == toset([
      "type=google.cloud.storage.object.v1.finalized",
      "bucket=${google_storage_bucket.landing.name}",
    ])
    error_message = "the trigger matches finalize events of the landing bucket only"
  }
}

run "nothing_is_public" {
  command = apply

  assert {
    condition = alltrue(flatten([
      for m in module.function : [for member in m.invoker_members : !contains(["allUsers", "allAuthenticatedUsers"], member)]
    ]))
    error_message = "no function may be invokable by allUsers or allAuthenticatedUsers"
  }
  assert {
    condition     = contains(module.function["preprocess"].invoker_members, google_service_account.push.member)
    error_message = "the push identity invokes the Pub/Sub-fed functions"
  }
  assert {
    condition     = !contains(module.function["event-generator"].invoker_members, google_service_account.push.member)
    error_message = "the push identity invokes nothing it does not push to"
  }
  assert {
    condition     = contains(module.function["parquet-loader"].invoker_members, google_service_account.trigger.member)
    error_message = "the Eventarc trigger identity invokes parquet-loader"
  }
  assert {
    condition = alltrue([
      for b in [google_storage_bucket.raw, google_storage_bucket.landing] :
      b.public_access_prevention == "enforced" && b.uniform_bucket_level_access
    ])
    error_message = "buckets are private with uniform bucket-level access"
  }
}

run "raw_archive_lifecycle" {
  command = apply

  assert {
    condition = anytrue([
      for r in google_storage_bucket.raw.lifecycle_rule :
      r.action[0].type == "SetStorageClass" && r.action[0].storage_class == "NEARLINE" && r.condition[0].age == 30
    ])
    error_message = "raw archive moves to Nearline after 30 days"
  }
  assert {
    condition = anytrue([
      for r in google_storage_bucket.raw.lifecycle_rule :
      r.action[0].type == "Delete" && r.condition[0].age == 90 && contains(r.condition[0].matches_prefix, "raw/")
    ])
    error_message = "raw archive objects are deleted after 90 days, and only under raw/ (dead letters stay)"
  }
}

run "lifecycle_is_configurable" {
  command = apply

  variables {
    raw_archive_nearline_after_days = 7
    raw_archive_delete_after_days   = 0
  }

  assert {
    condition     = length(google_storage_bucket.raw.lifecycle_rule) == 1 && google_storage_bucket.raw.lifecycle_rule[0].condition[0].age == 7
    error_message = "0 keeps the raw archive forever; Nearline age follows the variable"
  }
}

run "nothing_pubsub_gives_up_on_is_dropped" {
  command = apply

  assert {
    condition = alltrue([
      for s in google_pubsub_subscription.push :
      s.dead_letter_policy[0].dead_letter_topic == google_pubsub_topic.dead_letter.id && s.dead_letter_policy[0].max_delivery_attempts == 10
    ])
    error_message = "every push subscription dead-letters to the dead-letter topic"
  }
  assert {
    condition     = alltrue([for s in google_pubsub_subscription.push : length(s.retry_policy) == 1])
    error_message = "every push subscription backs off between retries"
  }
  assert {
    condition     = alltrue([for s in google_pubsub_subscription.push : s.push_config[0].oidc_token[0].service_account_email == google_service_account.push.email])
    error_message = "every push carries an OIDC token of the push identity"
  }
  assert {
    condition     = length(google_pubsub_subscription_iam_member.agent_acks_dead_lettered) == 3 && google_pubsub_topic_iam_member.agent_publishes_dead_letters.role == "roles/pubsub.publisher"
    error_message = "the Pub/Sub service agent can forward to the dead-letter topic and ack the source"
  }
  assert {
    condition     = google_pubsub_subscription.dead_letter_hold.topic == google_pubsub_topic.dead_letter.id && google_pubsub_subscription.dead_letter_hold.expiration_policy[0].ttl == ""
    error_message = "dead-lettered messages are held by a subscription that never expires"
  }
}

run "cloud_sql_is_optional" {
  command = apply

  variables {
    cloud_sql = { enabled = true }
  }

  assert {
    condition     = length(google_sql_database_instance.pulse) == 1 && google_sql_database_instance.pulse[0].settings[0].connector_enforcement == "REQUIRED"
    error_message = "Cloud SQL is reachable only through the connector"
  }
  assert {
    condition     = length(google_project_iam_member.loader_cloudsql_client) == 1 && length(google_secret_manager_secret_iam_member.loader_reads_database_url) == 1
    error_message = "parquet-loader may connect and read DATABASE_URL"
  }
}

run "operators_cannot_be_everyone" {
  command = plan

  variables {
    operators = ["allUsers"]
  }

  expect_failures = [var.operators]
}
