variable "project" {
  description = "Project that holds the service."
  type        = string
}

variable "region" {
  description = "Cloud Run region."
  type        = string
}

variable "name" {
  description = "Service name (also the service account's base name), e.g. `pulse-preprocess`."
  type        = string
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,48}[a-z0-9]$", var.name))
    error_message = "name must be a lower-case Cloud Run service name of at most 50 characters."
  }
}

variable "description" {
  description = "What the function does, shown on the service."
  type        = string
}

variable "image" {
  description = "Container image, ideally pinned by digest (`…/preprocess@sha256:…`)."
  type        = string
}

variable "env" {
  description = "Environment variables: the function's configuration (see shared/src/config.rs)."
  type        = map(string)
  default     = {}
}

variable "secret_env" {
  description = "Environment variables read from Secret Manager: name => { secret, version }."
  type        = map(object({ secret = string, version = string }))
  default     = {}
}

variable "cpu" {
  description = "CPU limit per instance."
  type        = string
  default     = "1"
}

variable "memory" {
  description = "Memory limit per instance."
  type        = string
  default     = "512Mi"
}

variable "max_instances" {
  description = "Upper bound on instances (the bill's upper bound too)."
  type        = number
  default     = 10
}

variable "min_instances" {
  description = "Instances kept running when idle (0 scales to zero)."
  type        = number
  default     = 0
}

variable "cpu_idle" {
  description = "Throttle CPU between requests (request-based billing). Turn it off for work that continues after the answer."
  type        = bool
  default     = true
}

variable "concurrency" {
  description = "Requests one instance serves at once."
  type        = number
  default     = 80
}

variable "timeout_seconds" {
  description = "Request timeout. Keep it above PULSE_REQUEST_TIMEOUT_SECS so the function answers 503 itself."
  type        = number
  default     = 120
}

variable "ingress" {
  description = "Who can reach the URL at all (IAM still decides who may call it)."
  type        = string
  default     = "INGRESS_TRAFFIC_ALL"
  validation {
    condition     = contains(["INGRESS_TRAFFIC_ALL", "INGRESS_TRAFFIC_INTERNAL_ONLY", "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"], var.ingress)
    error_message = "ingress must be INGRESS_TRAFFIC_ALL, INGRESS_TRAFFIC_INTERNAL_ONLY or INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER."
  }
}

variable "invokers" {
  description = "Members given roles/run.invoker on this service, by a fixed key (push and trigger accounts, operators)."
  type        = map(string)
  default     = {}
  validation {
    condition     = alltrue([for m in values(var.invokers) : !contains(["allUsers", "allAuthenticatedUsers"], m)])
    error_message = "Pulse services are never public: remove allUsers / allAuthenticatedUsers from invokers."
  }
}

variable "custom_audiences" {
  description = "Extra OIDC audiences Cloud Run accepts (the push subscription's audience)."
  type        = list(string)
  default     = []
}

variable "cloudsql_instances" {
  description = "Cloud SQL connection names mounted at /cloudsql (the Cloud SQL connector)."
  type        = list(string)
  default     = []
}

variable "deletion_protection" {
  description = "Refuse `terraform destroy` of the service."
  type        = bool
  default     = false
}

variable "labels" {
  description = "Labels on the service."
  type        = map(string)
  default     = {}
}
