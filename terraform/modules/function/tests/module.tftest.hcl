# The function module on its own: Cloud Run's contract and the guard against public services.

mock_provider "google" {}

variables {
  project     = "pulse-test"
  region      = "europe-west1"
  name        = "pulse-preprocess"
  description = "test"
  image       = "europe-west1-docker.pkg.dev/pulse-test/pulse/preprocess:abc"
  env         = { PULSE_BACKEND = "gcp" }
  invokers    = { push = "serviceAccount:push@pulse-test.iam.gserviceaccount.com" }
}

run "scales_to_zero_and_probes_healthz" {
  command = apply

  assert {
    condition     = google_cloud_run_v2_service.this.template[0].scaling[0].min_instance_count == 0
    error_message = "functions scale to zero"
  }
  assert {
    condition     = google_cloud_run_v2_service.this.template[0].containers[0].startup_probe[0].http_get[0].path == "/healthz"
    error_message = "the startup probe asks /healthz"
  }
  assert {
    condition     = google_cloud_run_v2_service.this.template[0].service_account == google_service_account.this.email
    error_message = "the service runs as its own account"
  }
  assert {
    condition     = [for e in google_cloud_run_v2_service.this.template[0].containers[0].env : e.value if e.name == "PULSE_BACKEND"] == ["gcp"]
    error_message = "the function's configuration reaches the container"
  }
  assert {
    condition     = length(google_cloud_run_v2_service.this.template[0].volumes) == 0
    error_message = "no Cloud SQL volume unless asked for"
  }
}

run "refuses_public_invokers" {
  command = plan

  variables {
    invokers = { everyone = "allUsers" }
  }

  expect_failures = [var.invokers]
}

run "work_after_the_answer_keeps_its_cpu_and_instance" {
  command = apply

  variables {
    min_instances = 1
    max_instances = 1
    cpu_idle      = false
  }

  assert {
    condition     = google_cloud_run_v2_service.this.template[0].scaling[0].min_instance_count == 1 && google_cloud_run_v2_service.this.template[0].scaling[0].max_instance_count == 1
    error_message = "min_instances and max_instances reach the service"
  }
  assert {
    condition     = google_cloud_run_v2_service.this.template[0].containers[0].resources[0].cpu_idle == false
    error_message = "cpu_idle = false reaches the container: CPU stays on between requests"
  }
}

run "ingress_is_a_cloud_run_setting" {
  command = plan

  variables {
    ingress = "all"
  }

  expect_failures = [var.ingress]
}
