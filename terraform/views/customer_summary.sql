-- Per customer: orders, revenue, mean order value, first and last order.
SELECT e.customer_id,
       COUNT(*) AS orders,
       SUM(e.total_amount) AS revenue,
       AVG(e.total_amount) AS mean_order_value,
       MIN(e.timestamp) AS first_order_at,
       MAX(e.timestamp) AS last_order_at
FROM ${dataset}.unique_orders AS e
GROUP BY e.customer_id
