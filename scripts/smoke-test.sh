#!/usr/bin/env bash
# After a deploy: publishes one event to the raw topic and waits until preprocess has archived it
# (the raw archive object exists), proving topic → push subscription → preprocess → bucket works.
#
#   scripts/smoke-test.sh PROJECT RAW_TOPIC RAW_BUCKET [TIMEOUT_SECONDS]   (default 120)
#
# Needs gcloud, authenticated as someone who may publish to the topic and read the bucket.
set -euo pipefail

project=${1:?usage: scripts/smoke-test.sh PROJECT RAW_TOPIC RAW_BUCKET [TIMEOUT_SECONDS]}
topic=${2:?raw topic missing}
bucket=${3:?raw bucket missing}
timeout=${4:-120}

now=$(date -u +%s)
event_id="smoke-$now-$RANDOM"
timestamp=$(date -u -d "@$now" +%Y-%m-%dT%H:%M:%SZ)
object="raw/inventory/$(date -u -d "@$now" +%Y/%m/%d/%H/%M)/$event_id.json"
event=$(printf '{"event_id":"%s","event_type":"inventory","timestamp":"%s","product_id":"smoke-test","warehouse_id":"smoke-test","quantity_change":0,"reason":"deploy smoke test"}' \
  "$event_id" "$timestamp")

gcloud pubsub topics publish "$topic" --project="$project" --message="$event" \
  --attribute=source=smoke-test >/dev/null
echo "published $event_id to $topic; waiting for gs://$bucket/$object"

deadline=$((SECONDS + timeout))
while [ "$SECONDS" -lt "$deadline" ]; do
  if gcloud storage objects describe "gs://$bucket/$object" --project="$project" >/dev/null 2>&1; then
    echo "OK: the event was archived by preprocess"
    exit 0
  fi
  sleep 5
done
echo "FAIL: gs://$bucket/$object did not appear within ${timeout}s; see preprocess's logs:" >&2
echo "  gcloud logging read 'resource.type=\"cloud_run_revision\" AND jsonPayload.event_id=\"$event_id\"' --project=$project" >&2
exit 1
