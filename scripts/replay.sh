#!/usr/bin/env bash
# Calls a deployed function's replay endpoint with your identity token (the services are not
# public: you need roles/run.invoker, e.g. through Terraform's `operators`).
#
#   scripts/replay.sh FUNCTION BODY [PATH]
#
#   BODY   JSON, or @FILE to read it from a file
#   PATH   default /replay (inference re-scores with /predict-replay)
#
# Examples:
#   scripts/replay.sh preprocess '{"dead_letter_prefix": "dead-letter/bad_value/2025/01/"}'
#   scripts/replay.sh preprocess '{"raw": {"event_type": "order", "from": "2025-01-01T00:00:00Z", "to": "2025-01-02T00:00:00Z"}}'
#
# The service is `${PULSE_NAME_PREFIX:-pulse}-FUNCTION` in region ${PULSE_REGION:-gcloud's
# run/region}; PULSE_URL calls that base URL instead (e.g. http://127.0.0.1:8081 locally, no token).
set -euo pipefail

function=${1:?usage: scripts/replay.sh FUNCTION BODY [PATH]}
body=${2:?usage: scripts/replay.sh FUNCTION BODY [PATH]}
path=${3:-/replay}

if [ "${body:0:1}" = "@" ]; then
  body=$(cat "${body:1}")
fi

auth=()
if [ -n "${PULSE_URL:-}" ]; then
  url=$PULSE_URL
else
  region=${PULSE_REGION:-$(gcloud config get-value run/region 2>/dev/null)}
  if [ -z "$region" ]; then
    echo "set PULSE_REGION (or gcloud config set run/region REGION)" >&2
    exit 2
  fi
  service=${PULSE_NAME_PREFIX:-pulse}-$function
  url=$(gcloud run services describe "$service" --region="$region" --format='value(status.url)')
  # A service account's token must name the service as its audience; a person's cannot, and
  # Cloud Run accepts it as it is.
  token=$(gcloud auth print-identity-token --audiences="$url" 2>/dev/null || gcloud auth print-identity-token)
  auth=(-H "Authorization: Bearer $token")
fi

curl --silent --show-error --fail-with-body -X POST "${auth[@]}" \
  -H 'Content-Type: application/json' --data "$body" "$url$path"
echo
