-- Device readings with the anomaly score and label inference gave them (NULL until scored).
SELECT t.event_date, t.timestamp, t.device_id, t.sensor_type, t.reading, t.unit,
       p.score, p.label, p.label = 'anomaly' AS is_anomaly, p.model, p.model_version
FROM (
  SELECT * FROM ${dataset}.device_telemetry
  WHERE TRUE QUALIFY ROW_NUMBER() OVER (PARTITION BY event_id ORDER BY ingested_at) = 1
) AS t
LEFT JOIN (
  SELECT * FROM ${dataset}.predictions
  WHERE TRUE QUALIFY ROW_NUMBER() OVER (PARTITION BY event_id ORDER BY predicted_at DESC) = 1
) AS p
  ON p.event_id = t.event_id AND p.event_date = t.event_date
