# The five functions and the built-in predictor, each with its own service account, and the roles
# each one needs: nothing project-wide beyond BigQuery jobUser (jobs are project resources) and
# Vertex AI user.

locals {
  # Configuration every service reads, the predictor included (shared/src/config.rs).
  runtime_env = {
    PULSE_BACKEND        = "gcp"
    PULSE_LOG_FORMAT     = "json"
    GOOGLE_CLOUD_PROJECT = var.project
  }

  # And what every function reads besides: its buckets, topics and dataset.
  common_env = merge(local.runtime_env, {
    PULSE_RAW_BUCKET      = google_storage_bucket.raw.name
    PULSE_LANDING_BUCKET  = google_storage_bucket.landing.name
    PULSE_RAW_TOPIC       = google_pubsub_topic.raw.name
    PULSE_PROCESSED_TOPIC = google_pubsub_topic.processed.name
    PULSE_DATASET         = google_bigquery_dataset.pulse.dataset_id
  })

  # Pub/Sub-pushed functions check the push token themselves too, and take only the operators'
  # tokens on their manual routes: the push identity invokes the whole service, so IAM alone
  # would let a push token replay or change tables (shared/src/oidc.rs). table-manager's
  # operators include the scheduler's account, which calls POST /compact.
  push_env = {
    for f, audience in local.push_audience : f => {
      PULSE_PUSH_AUDIENCE        = audience
      PULSE_PUSH_SERVICE_ACCOUNT = google_service_account.push.email
      PULSE_OPERATOR_PRINCIPALS = join(",", concat(
        var.operators,
        f == "table-manager" ? [google_service_account.scheduler.member] : [],
      ))
    }
  }

  functions = {
    preprocess = {
      description = "Validates and normalises raw events, archives them and publishes them processed."
      memory      = "512Mi"
      env         = {}
    }
    table-manager = {
      description = "Creates and evolves the BigQuery table of each event type and streams rows in."
      memory      = "512Mi"
      env         = {}
    }
    parquet-loader = {
      description = "Loads Parquet files dropped in the landing bucket into BigQuery (and Cloud SQL)."
      memory      = "1Gi"
      env         = {}
    }
    inference = {
      description = "Scores processed events with a Vertex AI endpoint and stores the predictions."
      memory      = "512Mi"
      env = merge(
        { PULSE_PREDICTIONS_TABLE = google_bigquery_table.predictions.table_id },
        # The built-in predictor answers the same `:predict` path as Vertex AI, for any endpoint
        # name; a Vertex AI endpoint replaces it.
        var.vertex_endpoint == "" ? {
          PULSE_VERTEX_ENDPOINT  = "projects/${var.project}/locations/${var.region}/endpoints/pulse-builtin"
          PULSE_PREDICT_BASE_URL = module.predictor[0].uri
        } : { PULSE_VERTEX_ENDPOINT = var.vertex_endpoint },
      )
    }
    event-generator = {
      description = "Publishes realistic events to the raw topic at a controlled rate, by scenario."
      memory      = "512Mi"
      env         = {}
      # A run goes on after its request is answered and lives in the instance's memory: one
      # instance (status and cancel reach the instance that holds the run), CPU not throttled
      # between requests, and optionally kept running so scale-in cannot end a run.
      max_instances = 1
      min_instances = var.event_generator_always_on ? 1 : 0
      cpu_idle      = false
    }
  }

  # Who may invoke each function: the push identity (Pub/Sub-fed functions), the Eventarc
  # trigger identity (parquet-loader), and the operators (replay, event-generator).
  invokers = {
    for f in keys(local.functions) : f => merge(
      contains(keys(local.push), f) ? { push = google_service_account.push.member } : {},
      f == "parquet-loader" ? { eventarc = google_service_account.trigger.member } : {},
      { for i, m in var.operators : "operator-${i}" => m },
    )
  }
}

module "function" {
  source   = "./modules/function"
  for_each = local.functions

  project     = var.project
  region      = var.region
  name        = "${var.name_prefix}-${each.key}"
  description = each.value.description
  image       = var.images[each.key]
  labels      = merge(local.labels, { function = each.key })
  ingress     = var.ingress

  env = merge(
    local.common_env,
    lookup(local.push_env, each.key, {}),
    each.value.env,
    try(var.function_overrides[each.key].env, {}),
  )
  # Taken from the access grant and the version, not the secret, so the service is created after
  # the loader may read a version that exists (a revision whose secret cannot be read does not
  # start).
  secret_env = each.key == "parquet-loader" && var.cloud_sql.enabled ? {
    DATABASE_URL = {
      secret  = google_secret_manager_secret_iam_member.loader_reads_database_url[0].secret_id
      version = google_secret_manager_secret_version.database_url[0].version
    }
  } : {}
  cloudsql_instances = each.key == "parquet-loader" && var.cloud_sql.enabled ? [google_sql_database_instance.pulse[0].connection_name] : []

  cpu             = coalesce(try(var.function_overrides[each.key].cpu, null), "1")
  memory          = coalesce(try(var.function_overrides[each.key].memory, null), each.value.memory)
  max_instances   = coalesce(try(each.value.max_instances, null), try(var.function_overrides[each.key].max_instances, null), 10)
  min_instances   = try(each.value.min_instances, 0)
  cpu_idle        = try(each.value.cpu_idle, true)
  concurrency     = coalesce(try(var.function_overrides[each.key].concurrency, null), 80)
  timeout_seconds = coalesce(try(var.function_overrides[each.key].timeout_seconds, null), 120)

  invokers            = local.invokers[each.key]
  custom_audiences    = contains(keys(local.push_audience), each.key) ? [local.push_audience[each.key]] : []
  deletion_protection = var.deletion_protection

  depends_on = [google_project_service.enabled]
}

# The built-in models on Vertex AI's `:predict` shape (functions/predictor), unless a Vertex AI
# endpoint is given. Only inference calls it.
module "predictor" {
  source = "./modules/function"
  count  = var.vertex_endpoint == "" ? 1 : 0

  project     = var.project
  region      = var.region
  name        = "${var.name_prefix}-predictor"
  description = "The built-in models (anomaly score, purchase propensity) on Vertex AI's :predict shape."
  image       = var.images["predictor"]
  labels      = merge(local.labels, { function = "predictor" })
  ingress     = var.ingress
  env = merge(
    local.runtime_env,
    try(var.function_overrides["predictor"].env, {}),
  )

  memory              = coalesce(try(var.function_overrides["predictor"].memory, null), "512Mi")
  max_instances       = coalesce(try(var.function_overrides["predictor"].max_instances, null), 10)
  invokers            = { for i, m in var.operators : "operator-${i}" => m }
  deletion_protection = var.deletion_protection

  depends_on = [google_project_service.enabled]
}

# Outside the module call: inference's identity comes from the other module call.
resource "google_cloud_run_v2_service_iam_member" "inference_invokes_predictor" {
  count = var.vertex_endpoint == "" ? 1 : 0

  project  = var.project
  location = var.region
  name     = module.predictor[0].service_name
  role     = "roles/run.invoker"
  member   = module.function["inference"].service_account_member
}

# --- the raw bucket: preprocess writes the archive and dead-letter records and reads them back
# for replay; table-manager and inference dead-letter what can never be written (schema
# conflicts, bad predictions); table-manager reconciles the tables with the archive
# (`POST /reconcile`) and inference re-scores archive slices by hand (`POST /predict-replay`).
resource "google_storage_bucket_iam_member" "raw_writers" {
  for_each = toset(["preprocess", "table-manager", "inference"])

  bucket = google_storage_bucket.raw.name
  role   = "roles/storage.objectCreator"
  member = module.function[each.key].service_account_member
}

resource "google_storage_bucket_iam_member" "raw_readers" {
  for_each = toset(["preprocess", "table-manager", "inference"])

  bucket = google_storage_bucket.raw.name
  role   = "roles/storage.objectViewer"
  member = module.function[each.key].service_account_member
}

# --- preprocess: publishes processed events.
resource "google_pubsub_topic_iam_member" "preprocess_publishes_processed" {
  project = var.project
  topic   = google_pubsub_topic.processed.name
  role    = "roles/pubsub.publisher"
  member  = module.function["preprocess"].service_account_member
}

# --- table-manager, parquet-loader and inference: own tables in the dataset, run BigQuery jobs;
# inference calls Vertex AI.
resource "google_bigquery_dataset_iam_member" "editors" {
  for_each = toset(["table-manager", "parquet-loader", "inference"])

  project    = var.project
  dataset_id = google_bigquery_dataset.pulse.dataset_id
  role       = "roles/bigquery.dataEditor"
  member     = module.function[each.key].service_account_member
}

resource "google_project_iam_member" "bigquery_job_users" {
  for_each = toset(["table-manager", "parquet-loader", "inference"])

  project = var.project
  role    = "roles/bigquery.jobUser"
  member  = module.function[each.key].service_account_member
}

resource "google_project_iam_member" "inference_predicts" {
  project = var.project
  role    = "roles/aiplatform.user"
  member  = module.function["inference"].service_account_member
}

# --- parquet-loader: reads landing objects, moves bad ones to quarantine (copy + delete), loads
# into BigQuery (above) and, when enabled, Cloud SQL.
resource "google_storage_bucket_iam_member" "loader_landing" {
  bucket = google_storage_bucket.landing.name
  role   = "roles/storage.objectUser"
  member = module.function["parquet-loader"].service_account_member
}

resource "google_project_iam_member" "loader_cloudsql_client" {
  count = var.cloud_sql.enabled ? 1 : 0

  project = var.project
  role    = "roles/cloudsql.client"
  member  = module.function["parquet-loader"].service_account_member
}

resource "google_secret_manager_secret_iam_member" "loader_reads_database_url" {
  count = var.cloud_sql.enabled ? 1 : 0

  project   = var.project
  secret_id = google_secret_manager_secret.database_url[0].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = module.function["parquet-loader"].service_account_member
}

# --- event-generator: publishes raw events, nothing else.
resource "google_pubsub_topic_iam_member" "generator_publishes_raw" {
  project = var.project
  topic   = google_pubsub_topic.raw.name
  role    = "roles/pubsub.publisher"
  member  = module.function["event-generator"].service_account_member
}

# --- producers outside Pulse publish raw events.
resource "google_pubsub_topic_iam_member" "raw_publishers" {
  for_each = toset(var.raw_publishers)

  project = var.project
  topic   = google_pubsub_topic.raw.name
  role    = "roles/pubsub.publisher"
  member  = each.value
}
