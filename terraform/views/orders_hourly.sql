-- Orders per hour: count, revenue and distinct customers (each event counted once).
SELECT ${hour_of_timestamp} AS order_hour,
       COUNT(*) AS orders,
       SUM(e.total_amount) AS revenue,
       COUNT(DISTINCT e.customer_id) AS customers
FROM ${dataset}.unique_orders AS e
GROUP BY 1
