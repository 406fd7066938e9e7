-- Predictions per day, type and model: count, mean score, p95 latency of the predict calls.
SELECT event_date, event_type, model, model_version,
       COUNT(DISTINCT event_id) AS predictions,
       AVG(score) AS mean_score,
       ${p95_latency_ms} AS p95_latency_ms
FROM ${dataset}.unique_predictions
GROUP BY event_date, event_type, model, model_version
