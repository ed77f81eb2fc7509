-- fraudlake feature set: the 15 model inputs of the Fraud Detection Handbook (chapter 3).
--
-- This one file is read by both engines: DataFusion runs it over the lake to build the
-- `features` table (`fraudlake features build`), and the scoring server compiles it into
-- per-entity incremental state. Add a feature by adding a column here; no Rust change.
--
-- Input: the view `tx_labeled` (tx_id, tx_ts, event_time, customer_id, terminal_id, amount,
-- is_fraud). Windows ORDER BY event_time, which is tx_ts plus a sub-microsecond tie-break
-- from tx_id, so "up to CURRENT ROW" means up to and including this transaction in
-- (tx_ts, tx_id) order, in both engines.
--
-- Boundaries: RANGE frames are closed: [t - w, t] for customers, [t - 7d - w, t - 7d] for
-- terminals. (The handbook's pandas windows are open on the left; the two differ only for a
-- transaction exactly w earlier to the nanosecond of event_time.)
-- is_fraud may only be aggregated a label delay (7 days) before the transaction: the online
-- engine refuses frames that would read labels not yet known at scoring time.
--
-- The time since the entity's previous transaction, in seconds (NULL for its first one, or
-- when the previous one is more than 30 days old), in a form both engines run:
--   (CAST(tx_ts AS BIGINT) - CAST(MAX(tx_ts) OVER (PARTITION BY customer_id ORDER BY event_time
--      RANGE BETWEEN INTERVAL '30 days' PRECEDING AND INTERVAL '1 nanosecond' PRECEDING)
--      AS BIGINT)) / 1000000.0
-- The frame ends one nanosecond before the row: a same-second transaction with a smaller tx_id
-- is the previous one (0 s). date_part('epoch', tx_ts) - date_part('epoch', MAX(tx_ts) OVER
-- (...)) also works (DOUBLE seconds since 1970, so rounded to ~0.2 us). LAG(tx_ts) is refused:
-- it reaches back without bound, and incremental builds, restarts and the parity replay read
-- only the lookback.
--
-- Also compiled by both engines (sql/features_v2.sql uses them; docs/features.md lists them
-- with their online cost, `fraudlake features show` per feature): expressions over window
-- results, MIN/MAX/STDDEV over RANGE frames, PARTITION BY customer_id, terminal_id.
SELECT
  tx_id,
  tx_ts,
  customer_id,
  terminal_id,
  amount AS tx_amount,
  CASE WHEN date_part('dow', tx_ts) IN (0, 6) THEN 1 ELSE 0 END AS tx_during_weekend,
  CASE WHEN date_part('hour', tx_ts) <= 6 THEN 1 ELSE 0 END AS tx_during_night,

  COUNT(*)    OVER (PARTITION BY customer_id ORDER BY event_time RANGE BETWEEN INTERVAL '1 day' PRECEDING AND CURRENT ROW)   AS customer_nb_tx_1d,
  AVG(amount) OVER (PARTITION BY customer_id ORDER BY event_time RANGE BETWEEN INTERVAL '1 day' PRECEDING AND CURRENT ROW)   AS customer_avg_amount_1d,
  COUNT(*)    OVER (PARTITION BY customer_id ORDER BY event_time RANGE BETWEEN INTERVAL '7 days' PRECEDING AND CURRENT ROW)  AS customer_nb_tx_7d,
  AVG(amount) OVER (PARTITION BY customer_id ORDER BY event_time RANGE BETWEEN INTERVAL '7 days' PRECEDING AND CURRENT ROW)  AS customer_avg_amount_7d,
  COUNT(*)    OVER (PARTITION BY customer_id ORDER BY event_time RANGE BETWEEN INTERVAL '30 days' PRECEDING AND CURRENT ROW) AS customer_nb_tx_30d,
  AVG(amount) OVER (PARTITION BY customer_id ORDER BY event_time RANGE BETWEEN INTERVAL '30 days' PRECEDING AND CURRENT ROW) AS customer_avg_amount_30d,

  COUNT(*) OVER (PARTITION BY terminal_id ORDER BY event_time RANGE BETWEEN INTERVAL '8 days' PRECEDING AND INTERVAL '7 days' PRECEDING)  AS terminal_nb_tx_1d,
  COALESCE(AVG(is_fraud) OVER (PARTITION BY terminal_id ORDER BY event_time RANGE BETWEEN INTERVAL '8 days' PRECEDING AND INTERVAL '7 days' PRECEDING), 0)  AS terminal_risk_1d,
  COUNT(*) OVER (PARTITION BY terminal_id ORDER BY event_time RANGE BETWEEN INTERVAL '14 days' PRECEDING AND INTERVAL '7 days' PRECEDING) AS terminal_nb_tx_7d,
  COALESCE(AVG(is_fraud) OVER (PARTITION BY terminal_id ORDER BY event_time RANGE BETWEEN INTERVAL '14 days' PRECEDING AND INTERVAL '7 days' PRECEDING), 0) AS terminal_risk_7d,
  COUNT(*) OVER (PARTITION BY terminal_id ORDER BY event_time RANGE BETWEEN INTERVAL '37 days' PRECEDING AND INTERVAL '7 days' PRECEDING) AS terminal_nb_tx_30d,
  COALESCE(AVG(is_fraud) OVER (PARTITION BY terminal_id ORDER BY event_time RANGE BETWEEN INTERVAL '37 days' PRECEDING AND INTERVAL '7 days' PRECEDING), 0) AS terminal_risk_30d
FROM tx_labeled
