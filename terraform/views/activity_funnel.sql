-- The shopping funnel per day: events and distinct users at each step, page view to purchase.
SELECT e.event_date,
       CASE e.activity_type
         WHEN 'page_view' THEN 1
         WHEN 'product_view' THEN 2
         WHEN 'add_to_cart' THEN 3
         WHEN 'checkout' THEN 4
         WHEN 'purchase' THEN 5
       END AS step,
       e.activity_type,
       COUNT(*) AS events,
       COUNT(DISTINCT e.user_id) AS users
FROM ${dataset}.unique_user_activity AS e
WHERE e.activity_type IN ('page_view', 'product_view', 'add_to_cart', 'checkout', 'purchase')
GROUP BY 1, 2, 3
