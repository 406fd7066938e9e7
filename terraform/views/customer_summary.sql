-- Per customer: orders, revenue, mean order value, first and last order.
SELECT e.customer_id,
       COUNT(*) AS orders,
       SUM(e.total_amount) AS revenue,
       AVG(e.total_amount) AS mean_order_value,
       MIN(e.timestamp) AS first_order_at,
       MAX(e.timestamp) AS last_order_at
FROM (
  SELECT * FROM ${dataset}.orders
  WHERE TRUE QUALIFY ROW_NUMBER() OVER (PARTITION BY event_id ORDER BY ingested_at) = 1
) AS e
GROUP BY e.customer_id
