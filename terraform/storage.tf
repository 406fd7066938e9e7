# Buckets: the raw archive (and dead-letter store) and the Parquet landing zone (and quarantine).
# Both private: uniform bucket-level access, public access prevention enforced.

locals {
  raw_bucket     = "${var.project}-${var.name_prefix}-raw"
  landing_bucket = "${var.project}-${var.name_prefix}-landing"
  # The prefixes the functions use (shared/src/config.rs defaults).
  raw_prefix         = "raw/"
  dead_letter_prefix = "dead-letter/"
  landing_prefix     = "landing/"
  quarantine_prefix  = "quarantine/"
}

resource "google_storage_bucket" "raw" {
  #checkov:skip=CKV_GCP_62:Access logs of the archive go to Cloud Audit Logs (data access), not a second bucket.
  #checkov:skip=CKV_GCP_78:Objects are written once under unique names (create-if-absent); versioning would only keep deleted copies the lifecycle is meant to remove.
  project                     = var.project
  name                        = local.raw_bucket
  location                    = var.bucket_location
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false
  labels                      = local.labels

  # The raw archive cools down, then goes. Dead-letter records are not touched: they stay until
  # someone replays or deletes them.
  lifecycle_rule {
    condition {
      age            = var.raw_archive_nearline_after_days
      matches_prefix = [local.raw_prefix]
    }
    action {
      type          = "SetStorageClass"
      storage_class = "NEARLINE"
    }
  }

  dynamic "lifecycle_rule" {
    for_each = var.raw_archive_delete_after_days > 0 ? [1] : []
    content {
      condition {
        age            = var.raw_archive_delete_after_days
        matches_prefix = [local.raw_prefix]
      }
      action {
        type = "Delete"
      }
    }
  }

  depends_on = [google_project_service.enabled]
}

resource "google_storage_bucket" "landing" {
  #checkov:skip=CKV_GCP_62:Access logs of the landing zone go to Cloud Audit Logs (data access), not a second bucket.
  #checkov:skip=CKV_GCP_78:A Parquet drop is loaded once by generation; a re-upload is a new generation and a new load, not a version to keep.
  project                     = var.project
  name                        = local.landing_bucket
  location                    = var.bucket_location
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false
  labels                      = local.labels

  # parquet-loader loads an object whose name holds a pattern character from a copy under
  # _pulse_staging/ and deletes it after; one left by a crash mid-load goes after a day.
  lifecycle_rule {
    condition {
      age            = 1
      matches_prefix = ["_pulse_staging/"]
    }
    action {
      type = "Delete"
    }
  }

  # A drop is loaded once, by generation, soon after it lands: what stays is history. Refused
  # files and their reports stay twice as long, for whoever has to look at them.
  dynamic "lifecycle_rule" {
    for_each = var.landing_delete_after_days > 0 ? {
      (local.landing_prefix)    = var.landing_delete_after_days
      (local.quarantine_prefix) = 2 * var.landing_delete_after_days
    } : {}
    content {
      condition {
        age            = lifecycle_rule.value
        matches_prefix = [lifecycle_rule.key]
      }
      action {
        type = "Delete"
      }
    }
  }

  depends_on = [google_project_service.enabled]
}
