# Variables every terraform test file starts from (`terraform test` reads this file); a file
# or a run sets only what it changes.
project     = "pulse-test"
region      = "europe-west1"
alert_email = "alerts@example.com"
operators   = ["user:data-eng@example.com"]
images = {
  preprocess        = "europe-west1-docker.pkg.dev/pulse-test/pulse/preprocess@sha256:0000000000000000000000000000000000000000000000000000000000000001"
  "table-manager"   = "europe-west1-docker.pkg.dev/pulse-test/pulse/table-manager@sha256:0000000000000000000000000000000000000000000000000000000000000002"
  "parquet-loader"  = "europe-west1-docker.pkg.dev/pulse-test/pulse/parquet-loader@sha256:0000000000000000000000000000000000000000000000000000000000000003"
  inference         = "europe-west1-docker.pkg.dev/pulse-test/pulse/inference@sha256:0000000000000000000000000000000000000000000000000000000000000004"
  "event-generator" = "europe-west1-docker.pkg.dev/pulse-test/pulse/event-generator@sha256:0000000000000000000000000000000000000000000000000000000000000005"
  predictor         = "europe-west1-docker.pkg.dev/pulse-test/pulse/predictor@sha256:0000000000000000000000000000000000000000000000000000000000000006"
}
