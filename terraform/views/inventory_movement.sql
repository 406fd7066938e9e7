-- Stock movement per day, product and warehouse: units in, units out and the net change.
SELECT e.event_date, e.product_id, e.warehouse_id,
       COUNT(*) AS movements,
       SUM(CASE WHEN e.quantity_change > 0 THEN e.quantity_change ELSE 0 END) AS units_in,
       SUM(CASE WHEN e.quantity_change < 0 THEN -e.quantity_change ELSE 0 END) AS units_out,
       SUM(e.quantity_change) AS net_change
FROM ${dataset}.unique_inventory AS e
GROUP BY e.event_date, e.product_id, e.warehouse_id
