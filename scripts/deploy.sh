#!/usr/bin/env bash
# Deploys Pulse by hand, the same steps as .github/workflows/deploy.yml: builds each function's
# image, pushes it to Artifact Registry tagged with the commit, applies Terraform with the image
# digests, then runs the smoke test.
#
#   scripts/deploy.sh PROJECT [REGION]        (REGION default europe-west1)
#
# Needs gcloud (logged in, with rights to deploy), terraform, and docker or buildah. Terraform
# variables beyond project/region/images come from terraform/terraform.tfvars or TF_VAR_* (at
# least alert_email). State lives in gs://$TF_STATE_BUCKET (default PROJECT-tfstate), created
# here when missing. PULSE_NAME_PREFIX (default pulse) must match the `name_prefix` variable.
set -euo pipefail
cd "$(dirname "$0")/.."

plan_only=false
if [ "${1:-}" = "--plan" ]; then
  plan_only=true
  shift
fi
project=${1:?usage: scripts/deploy.sh [--plan] PROJECT [REGION]}
region=${2:-europe-west1}
prefix=${PULSE_NAME_PREFIX:-pulse}
state_bucket=${TF_STATE_BUCKET:-$project-tfstate}
functions=(preprocess table-manager parquet-loader inference event-generator predictor)
registry=$region-docker.pkg.dev
repository=$registry/$project/$prefix
tag=$(git rev-parse --short=12 HEAD)
if [ -n "$(git status --porcelain)" ]; then
  tag=$tag-dirty-$(date -u +%Y%m%d%H%M%S)
fi

missing=()
for f in "${functions[@]}"; do
  [ -f "functions/$f/Cargo.toml" ] || missing+=("$f")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "cannot deploy: no crate yet for ${missing[*]} (terraform needs an image for every function)" >&2
  exit 1
fi

echo "== state bucket gs://$state_bucket"
if ! gcloud storage buckets describe "gs://$state_bucket" --project="$project" >/dev/null 2>&1; then
  gcloud storage buckets create "gs://$state_bucket" --project="$project" --location="$region" \
    --uniform-bucket-level-access --public-access-prevention
  gcloud storage buckets update "gs://$state_bucket" --versioning
fi

tf() { terraform -chdir=terraform "$@"; }
# The provider versions and checksums are pinned by terraform/.terraform.lock.hcl once it is
# committed (the first init on a machine that reaches the registry writes it): then nothing else
# may be installed.
lockfile=()
[ -f terraform/.terraform.lock.hcl ] && lockfile=(-lockfile=readonly)
tf init -input=false -reconfigure "${lockfile[@]}" \
  -backend-config="bucket=$state_bucket" -backend-config="prefix=pulse/$prefix"
vars=(-var="project=$project" -var="region=$region" -var="name_prefix=$prefix")

# Writes the plan to tfplan, prints it, and adds it to the GitHub job summary when there is one.
plan() {
  tf plan -input=false -out=tfplan "${vars[@]}" "$@"
  if [ -n "${GITHUB_STEP_SUMMARY:-}" ]; then
    { echo '```'; tf show -no-color tfplan; echo '```'; } >> "$GITHUB_STEP_SUMMARY"
  fi
}

if $plan_only; then
  echo "== terraform plan (with the images deployed now)"
  plan -var="images=$(tf output -json images)"
  exit 0
fi

echo "== APIs and the image repository (first)"
# The services need images, and images need the repository: create it (and enable the APIs)
# before the rest. Terraform asks for every variable, so the images are placeholders here.
placeholder=$(printf '"%s"="unused",' "${functions[@]}")
tf apply -input=false -auto-approve "${vars[@]}" -var="images={${placeholder%,}}" \
  -target=google_project_service.enabled -target=google_artifact_registry_repository.images

echo "== images ($repository/FUNCTION:$tag)"
if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  gcloud auth configure-docker "$registry" --quiet
  push() { docker tag "$1" "$2" && docker push --quiet "$2" >/dev/null; }
else
  gcloud auth print-access-token | buildah login --username=oauth2accesstoken --password-stdin "$registry"
  push() { buildah --storage-driver vfs push --quiet "$1" "docker://$2"; }
fi
digest_of() {
  gcloud artifacts docker images describe "$1" --format='value(image_summary.digest)' 2>/dev/null
}
images="{"
for f in "${functions[@]}"; do
  # Tags are immutable: a deploy run again for the same commit reuses what the first one pushed.
  if ! digest=$(digest_of "$repository/$f:$tag") || [ -z "$digest" ]; then
    local_image=$(scripts/build-image.sh "$f" "localhost/pulse-$f:$tag" | tail -n 1)
    push "$local_image" "$repository/$f:$tag"
    digest=$(digest_of "$repository/$f:$tag")
  fi
  echo "$f: $repository/$f@$digest"
  images+="\"$f\"=\"$repository/$f@$digest\","
done
images="${images%,}}"

echo "== terraform plan"
plan -var="images=$images"
echo "== terraform apply (the plan above, nothing else)"
tf apply -input=false tfplan

echo "== smoke test"
scripts/smoke-test.sh "$project" "$(tf output -json topics | jq -r .raw)" "$(tf output -json buckets | jq -r .raw)"
