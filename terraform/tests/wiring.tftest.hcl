# The wiring, checked offline against a mocked google provider: every function has a service,
# its own account and a way in; nothing is public; the raw archive has its lifecycle; nothing
# Pub/Sub gives up on is dropped.

mock_provider "google" {}

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
  assert {
    condition     = length(google_sql_user.loader) == 1 && length(google_secret_manager_secret_version.database_url) == 1
    error_message = "one apply creates the loader's database user and the DATABASE_URL it reads"
  }
  assert {
    condition     = !contains(keys(local.functions["parquet-loader"].env), "PULSE_CLOUDSQL_INSTANCE")
    error_message = "no variable the loader does not read"
  }
}

run "operators_cannot_be_everyone" {
  command = plan

  variables {
    operators = ["allUsers"]
  }

  expect_failures = [var.operators]
}

run "operators_are_people_not_groups" {
  command = plan

  variables {
    operators = ["group:data-eng@example.com"]
  }

  expect_failures = [var.operators]
}

run "manual_routes_take_the_operators_not_the_push_identity" {
  command = apply

  variables {
    operators = ["user:ann@example.com", "domain:ops.example.com"]
  }

  assert {
    condition = alltrue([for f in ["preprocess", "inference"] :
      local.push_env[f].PULSE_OPERATOR_PRINCIPALS == "user:ann@example.com,domain:ops.example.com"
    ])
    error_message = "the pushed functions' manual routes take the operators"
  }
  assert {
    condition     = local.push_env["table-manager"].PULSE_OPERATOR_PRINCIPALS == "user:ann@example.com,domain:ops.example.com,${google_service_account.scheduler.member}"
    error_message = "table-manager's manual routes take the operators and the scheduler, which compacts"
  }
  assert {
    condition     = alltrue([for f, env in local.push_env : !strcontains(env.PULSE_OPERATOR_PRINCIPALS, google_service_account.push.email)])
    error_message = "the push identity is never an operator"
  }
}

run "inference_scores_with_the_built_in_predictor_by_default" {
  command = apply

  assert {
    condition     = length(module.predictor) == 1 && module.predictor[0].service_name == "pulse-predictor"
    error_message = "without a Vertex AI endpoint the built-in predictor is deployed"
  }
  assert {
    condition     = local.functions["inference"].env["PULSE_PREDICT_BASE_URL"] == module.predictor[0].uri && can(regex("^projects/pulse-test/locations/europe-west1/endpoints/", local.functions["inference"].env["PULSE_VERTEX_ENDPOINT"]))
    error_message = "inference calls the predictor's :predict path (it cannot start without an endpoint)"
  }
  assert {
    condition     = google_cloud_run_v2_service_iam_member.inference_invokes_predictor[0].member == module.function["inference"].service_account_member
    error_message = "inference may invoke the predictor"
  }
}

run "a_vertex_endpoint_replaces_the_predictor" {
  command = apply

  variables {
    vertex_endpoint = "projects/pulse-test/locations/europe-west1/endpoints/123"
  }

  assert {
    condition     = length(module.predictor) == 0 && local.functions["inference"].env["PULSE_VERTEX_ENDPOINT"] == "projects/pulse-test/locations/europe-west1/endpoints/123" && !contains(keys(local.functions["inference"].env), "PULSE_PREDICT_BASE_URL")
    error_message = "a Vertex AI endpoint is called directly, and no predictor is deployed"
  }
}

run "generator_runs_outlive_their_request" {
  command = apply

  assert {
    condition     = local.functions["event-generator"].max_instances == 1 && local.functions["event-generator"].min_instances == 1 && local.functions["event-generator"].cpu_idle == false
    error_message = "the generator runs on one instance that keeps its CPU and is not scaled in"
  }
}

run "alerts_watch_the_right_subscriptions_and_every_failure" {
  command = apply

  assert {
    condition     = alltrue([for c in google_monitoring_alert_policy.pulse["backlog_age"].conditions : !strcontains(c.condition_threshold[0].filter, google_pubsub_subscription.dead_letter_hold.name)])
    error_message = "the dead-letter hold subscription is never acknowledged: its backlog must not alert"
  }
  assert {
    condition     = anytrue([for c in google_monitoring_alert_policy.pulse["backlog_age"].conditions : strcontains(c.condition_threshold[0].filter, "eventarc-europe-west1-pulse-parquet-loader-finalized-sub-")])
    error_message = "parquet-loader's Eventarc subscription is watched"
  }
  assert {
    condition     = google_monitoring_alert_policy.pulse["server_errors"].conditions[0].condition_threshold[0].threshold_value < 10 && google_monitoring_alert_policy.pulse["server_errors"].conditions[0].condition_threshold[0].aggregations[0].per_series_aligner == "ALIGN_SUM"
    error_message = "a handful of 5xx answers alerts (a loader failing on one file)"
  }
  assert {
    condition     = strcontains(google_logging_metric.counters["dead_letters"].filter, "jsonPayload.deadLetter") && google_logging_metric.counters["dead_letters"].label_extractors["reason"] == "EXTRACT(jsonPayload.reason)"
    error_message = "the functions' own dead letters are counted by reason"
  }
  assert {
    condition     = length(google_monitoring_alert_policy.pulse["failed_loads"].conditions) == 2
    error_message = "quarantined files and failed load jobs alert"
  }
}

run "landing_lifecycle_and_trigger_location" {
  command = apply

  variables {
    bucket_location = "EU"
  }

  assert {
    condition     = google_eventarc_trigger.landing_finalized.location == "eu"
    error_message = "a multi-region bucket's trigger is in that multi-region"
  }
  assert {
    condition = toset([for r in google_storage_bucket.landing.lifecycle_rule : "${r.condition[0].matches_prefix[0]}=${r.condition[0].age}"]) == toset([
      "_pulse_staging/=1", "landing/=30", "quarantine/=60",
    ])
    error_message = "landing objects go after 30 days, quarantined ones after 60, staged copies after a day"
  }
}

run "scored_types_cannot_break_the_filter" {
  command = plan

  variables {
    scored_event_types = ["order\" OR attributes.event_type != \"x"]
  }

  expect_failures = [var.scored_event_types]
}

run "ingress_is_a_cloud_run_setting" {
  command = plan

  variables {
    ingress = "internal"
  }

  expect_failures = [var.ingress]
}

run "vertex_endpoint_is_a_resource_name" {
  command = plan

  variables {
    vertex_endpoint = "https://europe-west1-aiplatform.googleapis.com/v1/projects/p/locations/r/endpoints/e"
  }

  expect_failures = [var.vertex_endpoint]
}
