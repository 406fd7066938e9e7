terraform {
  required_version = ">= 1.7"

  # State in a Cloud Storage bucket: `terraform init -backend-config=bucket=… -backend-config=prefix=…`
  # (scripts/deploy.sh and deploy.yml do this).
  backend "gcs" {}

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 6.20"
    }
  }
}

provider "google" {
  project = var.project
  region  = var.region
}
