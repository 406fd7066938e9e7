# The deduplicated reading layer and its upkeep, checked offline against a mocked google
# provider: the predictions view is made in the same apply as its table, and the daily
# compaction calls table-manager with its own identity.

mock_provider "google" {}

variables {
  event_table_views = true
}

run "one_row_per_event_as_queries_see_it" {
  command = apply

  assert {
    condition     = strcontains(google_bigquery_table.unique_predictions.view[0].query, "pulse-test.pulse.predictions`") && strcontains(google_bigquery_table.unique_predictions.view[0].query, "PARTITION BY event_id ORDER BY predicted_at")
    error_message = "unique_predictions shows each event's first prediction"
  }
}

run "compaction_runs_daily_as_its_own_identity" {
  command = apply

  assert {
    condition     = google_cloud_scheduler_job.compaction.http_target[0].uri == "${module.function["table-manager"].uri}/compact"
    error_message = "the job calls table-manager's compaction"
  }
  assert {
    condition     = google_cloud_scheduler_job.compaction.http_target[0].oidc_token[0].service_account_email == google_service_account.scheduler.email
    error_message = "the job signs in with its own service account"
  }
  assert {
    condition     = google_cloud_run_v2_service_iam_member.scheduler_invokes_table_manager.member == google_service_account.scheduler.member && google_cloud_run_v2_service_iam_member.scheduler_invokes_table_manager.name == module.function["table-manager"].service_name
    error_message = "the scheduler may invoke table-manager, and only table-manager"
  }
}
