-- clvx's RFM summary as SQL (DuckDB dialect), for logs that live in a warehouse.
--
-- Input: a relation `transactions(customer_id, ts, amount)`: one row per order line,
-- amount = line revenue (negative for returns). Parameter: the as-of date, here
-- DATE '2024-12-30'. Output: customer_id, frequency, recency, T, monetary_value in
-- days, exactly as `clvx rfm --period day --as-of 2024-12-30 --no-scores`.
--
-- For weeks: replace CAST(ts AS DATE) by date_trunc('week', ts) (weeks start on
-- Monday), the as-of date by date_trunc('week', DATE '...'), and 'day' by 'week' in
-- date_diff. For months: 'month' likewise.

WITH lines AS (
    SELECT customer_id, ts, amount
    FROM transactions
    WHERE customer_id IS NOT NULL
      AND CAST(ts AS DATE) <= DATE '2024-12-30'
),
purchases AS (
    SELECT customer_id, ts, amount FROM lines WHERE amount >= 0
),
-- A return is netted against the customer's latest purchase at or before it;
-- a return with no earlier purchase is dropped.
netted_returns AS (
    SELECT r.customer_id, p.ts, r.amount
    FROM (SELECT * FROM lines WHERE amount < 0) r
    ASOF JOIN (SELECT DISTINCT customer_id, ts FROM purchases) p
      ON r.customer_id = p.customer_id AND r.ts >= p.ts
),
periods AS (
    SELECT customer_id, CAST(ts AS DATE) AS period, SUM(amount) AS amount
    FROM (SELECT * FROM purchases UNION ALL SELECT * FROM netted_returns)
    GROUP BY customer_id, period
),
per_customer AS (
    SELECT customer_id,
           COUNT(*) - 1 AS frequency,
           MIN(period) AS first_period,
           MAX(period) AS last_period,
           SUM(amount) AS total_spend,
           arg_min(amount, period) AS first_spend
    FROM periods
    GROUP BY customer_id
)
SELECT customer_id,
       frequency,
       date_diff('day', first_period, last_period) AS recency,
       date_diff('day', first_period, DATE '2024-12-30') AS "T",
       CASE WHEN frequency > 0 THEN (total_spend - first_spend) / frequency ELSE 0.0 END AS monetary_value
FROM per_customer
ORDER BY customer_id
