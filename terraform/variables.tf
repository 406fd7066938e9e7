variable "project" {
  description = "Google Cloud project id that holds everything."
  type        = string
}

variable "region" {
  description = "Region of the Cloud Run services, Eventarc triggers, buckets and Artifact Registry."
  type        = string
  default     = "europe-west1"
}

variable "name_prefix" {
  description = "Prefix of every resource name, so two deployments can share a project."
  type        = string
  default     = "pulse"
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,13}$", var.name_prefix))
    error_message = "name_prefix must be 2-14 lower-case letters, digits or dashes, starting with a letter."
  }
}

variable "images" {
  description = <<-EOT
    Container image of each function, pinned by digest in deploy.yml / scripts/deploy.sh
    (e.g. `europe-west1-docker.pkg.dev/PROJECT/pulse/preprocess@sha256:…`). Keys: preprocess,
    table-manager, parquet-loader, inference, event-generator, and predictor unless
    vertex_endpoint is set.
  EOT
  type        = map(string)
  validation {
    condition = alltrue([
      for f in concat(
        ["preprocess", "table-manager", "parquet-loader", "inference", "event-generator"],
        var.vertex_endpoint == "" ? ["predictor"] : [],
      ) : contains(keys(var.images), f)
    ])
    error_message = "images needs an image for each of preprocess, table-manager, parquet-loader, inference and event-generator, and predictor when vertex_endpoint is empty."
  }
}

variable "function_overrides" {
  description = "Per-function sizing: { preprocess = { max_instances = 20, memory = \"1Gi\" } }."
  type = map(object({
    cpu             = optional(string)
    memory          = optional(string)
    max_instances   = optional(number)
    concurrency     = optional(number)
    timeout_seconds = optional(number)
    env             = optional(map(string), {})
  }))
  default = {}
}

variable "operators" {
  description = "IAM members who may call the functions by hand (replay, :ensure, event-generator), e.g. `user:ann@example.com` or `domain:example.com`. The functions check the caller's ID token against this list too (PULSE_OPERATOR_PRINCIPALS), and a token names its holder, not their groups: no `group:` members."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for m in var.operators : !contains(["allUsers", "allAuthenticatedUsers"], m)])
    error_message = "operators must name people; allUsers and allAuthenticatedUsers would make the functions public."
  }
  validation {
    condition     = alltrue([for m in var.operators : can(regex("^(user|serviceAccount):[^@,]+@[^@,]+$|^domain:[^@,:]+$", m))])
    error_message = "operators must be user:EMAIL, serviceAccount:EMAIL or domain:DOMAIN: the functions check the caller's ID token, which names a person, not their groups."
  }
}

variable "raw_publishers" {
  description = "IAM members that publish events to the raw topic (your producers), e.g. `serviceAccount:orders@…`."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for m in var.raw_publishers : !contains(["allUsers", "allAuthenticatedUsers"], m)])
    error_message = "raw_publishers must name identities; allUsers and allAuthenticatedUsers would let anyone inject events."
  }
}

variable "ingress" {
  description = "Cloud Run ingress of every function. Every call needs an identity with run.invoker whatever this says; INGRESS_TRAFFIC_INTERNAL_ONLY still receives Pub/Sub and Eventarc in this project, but replay and the event generator then have to be called from inside the VPC."
  type        = string
  default     = "INGRESS_TRAFFIC_ALL"
  validation {
    condition     = contains(["INGRESS_TRAFFIC_ALL", "INGRESS_TRAFFIC_INTERNAL_ONLY", "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"], var.ingress)
    error_message = "ingress must be INGRESS_TRAFFIC_ALL, INGRESS_TRAFFIC_INTERNAL_ONLY or INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER."
  }
}

variable "bucket_location" {
  description = "Location of the raw archive and landing buckets: a region, or a multi-region (EU, US, ASIA). The landing bucket's Eventarc trigger is created in the same location, as Eventarc requires."
  type        = string
  default     = "EUROPE-WEST1"
  validation {
    condition     = can(regex("^([A-Za-z]+-[A-Za-z]+[0-9]+|EU|US|ASIA|eu|us|asia)$", var.bucket_location))
    error_message = "bucket_location must be a region (e.g. EUROPE-WEST1) or a multi-region (EU, US, ASIA); dual-regions are not supported by the landing trigger here."
  }
}

variable "landing_delete_after_days" {
  description = "Landing objects (loaded or not) are deleted after this many days; quarantined ones after twice as long (0 keeps them forever)."
  type        = number
  default     = 30
  validation {
    condition     = var.landing_delete_after_days >= 0
    error_message = "landing_delete_after_days must be 0 (keep) or a number of days."
  }
}

variable "raw_archive_nearline_after_days" {
  description = "Raw archive objects move to Nearline after this many days."
  type        = number
  default     = 30
}

variable "raw_archive_delete_after_days" {
  description = "Raw archive objects are deleted after this many days (0 keeps them forever)."
  type        = number
  default     = 90
  validation {
    condition     = var.raw_archive_delete_after_days == 0 || var.raw_archive_delete_after_days > var.raw_archive_nearline_after_days
    error_message = "raw_archive_delete_after_days must be 0 (keep) or later than raw_archive_nearline_after_days."
  }
}

variable "dataset_id" {
  description = "BigQuery dataset of the event tables, the predictions table and the curated views."
  type        = string
  default     = "pulse"
}

variable "dataset_location" {
  description = "BigQuery dataset location (EU, US or a region)."
  type        = string
  default     = "EU"
}

variable "event_table_views" {
  description = "Create the curated views over the event tables. Those tables are created by table-manager on the first event of each type, so turn this on after events have flowed, then apply again."
  type        = bool
  default     = false
}

variable "scored_event_types" {
  description = "Event types delivered to inference (a filter on the processed topic's subscription)."
  type        = list(string)
  default     = ["device_telemetry", "user_activity"]
  validation {
    condition     = length(var.scored_event_types) > 0 && alltrue([for t in var.scored_event_types : can(regex("^[a-z][a-z0-9_]{0,63}$", t))])
    error_message = "scored_event_types must list at least one event type, each matching ^[a-z][a-z0-9_]{0,63}$ (it becomes part of a subscription filter)."
  }
}

variable "vertex_endpoint" {
  description = "Vertex AI endpoint inference calls: `projects/P/locations/R/endpoints/E`. Empty deploys the built-in predictor as its own Cloud Run service and scores with it."
  type        = string
  default     = ""
  validation {
    condition     = var.vertex_endpoint == "" || can(regex("^projects/[^/]+/locations/[a-z0-9-]+/endpoints/[A-Za-z0-9_-]+$", var.vertex_endpoint))
    error_message = "vertex_endpoint must be empty (built-in predictor) or projects/P/locations/R/endpoints/E."
  }
}

variable "event_generator_always_on" {
  description = "Keep the event generator's one instance running (about 50 USD a month at 1 vCPU, 512 MiB in a tier-1 region), so Cloud Run cannot scale it in while a run lasts. Off, it scales to zero and a run can be cut short when its instance is stopped."
  type        = bool
  default     = true
}

variable "max_delivery_attempts" {
  description = "Pub/Sub deliveries of one message before it goes to the dead-letter topic (5-100)."
  type        = number
  default     = 10
  validation {
    condition     = var.max_delivery_attempts >= 5 && var.max_delivery_attempts <= 100
    error_message = "Pub/Sub accepts 5 to 100 delivery attempts."
  }
}

variable "alert_email" {
  description = "Where alerts go (a notification channel is created for it)."
  type        = string
}

variable "freshness_alert_seconds" {
  description = "Alert when the p99 from an event's timestamp to its committed row stays above this many seconds for 10 minutes."
  type        = number
  default     = 120
  validation {
    condition     = var.freshness_alert_seconds > 0
    error_message = "freshness_alert_seconds must be a positive number of seconds."
  }
}

variable "cloud_sql" {
  description = "Optional Cloud SQL for PostgreSQL instance for parquet-loader's relational copy."
  type = object({
    enabled             = bool
    tier                = optional(string, "db-f1-micro")
    availability_type   = optional(string, "ZONAL")
    deletion_protection = optional(bool, true)
    # Raise it to give the loader's database user a new random password (and the secret a new
    # version holding it).
    password_version = optional(number, 1)
  })
  default = { enabled = false }
}

variable "deletion_protection" {
  description = "Protect the predictions table, the views and the Cloud Run services from `terraform destroy`."
  type        = bool
  default     = true
}

variable "labels" {
  description = "Labels on every resource that takes them."
  type        = map(string)
  default     = {}
}
