# Optional Cloud SQL for PostgreSQL: parquet-loader's relational copy. Reached only through the
# Cloud SQL connector (Cloud Run mounts /cloudsql; connector_enforcement = REQUIRED), with no
# authorised networks. One apply creates the instance, the loader's database user and the
# DATABASE_URL secret; the password is random and passes only through write-only arguments, so
# it is in neither the plan nor the state (docs/deploy.md).

resource "google_sql_database_instance" "pulse" {
  #checkov:skip=CKV_GCP_60:The public address accepts only the Cloud SQL connector (connector_enforcement = REQUIRED, no authorised networks); a private IP would need a VPC and Serverless VPC access for one loader.
  count = var.cloud_sql.enabled ? 1 : 0

  project             = var.project
  name                = "${var.name_prefix}-postgres"
  region              = var.region
  database_version    = "POSTGRES_18"
  deletion_protection = var.cloud_sql.deletion_protection

  settings {
    tier                        = var.cloud_sql.tier
    edition                     = "ENTERPRISE"
    availability_type           = var.cloud_sql.availability_type
    connector_enforcement       = "REQUIRED"
    deletion_protection_enabled = var.cloud_sql.deletion_protection
    user_labels                 = local.labels

    ip_configuration {
      ipv4_enabled = true
      ssl_mode     = "TRUSTED_CLIENT_CERTIFICATE_REQUIRED"
    }

    backup_configuration {
      enabled                        = true
      point_in_time_recovery_enabled = true
      start_time                     = "02:00"
    }

    insights_config {
      query_insights_enabled = true
    }

    # Logging and auditing flags (CIS PostgreSQL benchmark, as checkov checks them).
    database_flags {
      name  = "cloudsql.enable_pgaudit"
      value = "on"
    }
    database_flags {
      name  = "log_checkpoints"
      value = "on"
    }
    database_flags {
      name  = "log_connections"
      value = "on"
    }
    database_flags {
      name  = "log_disconnections"
      value = "on"
    }
    database_flags {
      name  = "log_duration"
      value = "on"
    }
    database_flags {
      name  = "log_hostname"
      value = "on"
    }
    database_flags {
      name  = "log_lock_waits"
      value = "on"
    }
    database_flags {
      name  = "log_min_duration_statement"
      value = "-1"
    }
    database_flags {
      name  = "log_min_error_statement"
      value = "error"
    }
    database_flags {
      name  = "log_min_messages"
      value = "error"
    }
    database_flags {
      name  = "log_statement"
      value = "ddl"
    }
    database_flags {
      name  = "log_temp_files"
      value = "0"
    }
  }

  depends_on = [google_project_service.enabled]
}

resource "google_sql_database" "pulse" {
  count = var.cloud_sql.enabled ? 1 : 0

  project  = var.project
  instance = google_sql_database_instance.pulse[0].name
  name     = "pulse"
}

locals {
  database_user = "pulse_loader"
  # Evaluated once per apply; used only on creation (and when database_password_version changes),
  # since both arguments that take it are write-only.
  database_password = uuid()
}

resource "google_sql_user" "loader" {
  count = var.cloud_sql.enabled ? 1 : 0

  project             = var.project
  instance            = google_sql_database_instance.pulse[0].name
  name                = local.database_user
  password_wo         = local.database_password
  password_wo_version = var.cloud_sql.password_version
}

# Holds `postgres://USER:PASSWORD@/pulse?host=/cloudsql/CONNECTION_NAME`, parquet-loader's
# DATABASE_URL.
resource "google_secret_manager_secret" "database_url" {
  #checkov:skip=CKV_GCP_84:Google-managed encryption is the choice here, as for the other data.
  count = var.cloud_sql.enabled ? 1 : 0

  project   = var.project
  secret_id = "${var.name_prefix}-database-url"
  labels    = local.labels

  replication {
    auto {}
  }

  depends_on = [google_project_service.enabled]
}

resource "google_secret_manager_secret_version" "database_url" {
  count = var.cloud_sql.enabled ? 1 : 0

  secret                 = google_secret_manager_secret.database_url[0].id
  secret_data_wo         = "postgres://${local.database_user}:${local.database_password}@/${google_sql_database.pulse[0].name}?host=/cloudsql/${google_sql_database_instance.pulse[0].connection_name}"
  secret_data_wo_version = var.cloud_sql.password_version

  # The URL is only good once its user exists with that password.
  depends_on = [google_sql_user.loader]
}
