-- Device readings with the anomaly score and label inference gave them (NULL until scored).
SELECT t.event_date, t.timestamp, t.device_id, t.sensor_type, t.reading, t.unit,
       p.score, p.label, p.label = 'anomaly' AS is_anomaly, p.model, p.model_version
FROM ${dataset}.unique_device_telemetry AS t
LEFT JOIN ${dataset}.unique_predictions AS p
  ON p.event_id = t.event_id AND p.event_date = t.event_date
