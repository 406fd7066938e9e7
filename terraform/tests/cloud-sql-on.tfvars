# With terraform.tfvars beside it: the variables with Cloud SQL on, so scripts/lint-deploy.sh
# runs checkov over the optional resources too.
cloud_sql = { enabled = true }
