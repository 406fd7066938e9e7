# The variables scripts/cloud-parity.sh plans the deployment with: the defaults, plus what has
# no default. Images are named as scripts/build-image.sh names them; the harness runs the binary
# each image ships (pulse-FUNCTION). One operator, so a person may start the event generator.
project     = "pulse-parity"
alert_email = "alerts@example.com"
operators   = ["user:operator@example.com"]
images = {
  preprocess      = "localhost/pulse-preprocess:dev"
  table-manager   = "localhost/pulse-table-manager:dev"
  parquet-loader  = "localhost/pulse-parquet-loader:dev"
  inference       = "localhost/pulse-inference:dev"
  event-generator = "localhost/pulse-event-generator:dev"
  predictor       = "localhost/pulse-predictor:dev"
}
