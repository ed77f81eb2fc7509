-- fraudlake feature set v2: the handbook's 15 model inputs (sql/features.sql, unchanged) plus
-- features aimed at the handbook's fraud scenarios, written with the constructs both engines
-- compile since issue #21. Select it with `--sql sql/features_v2.sql` (or
-- FRAUDLAKE_FEATURES_SQL); `features show --sql sql/features_v2.sql` prints each feature's
-- entity, frame and online cost. Not the default: it becomes one only if it wins on the
-- validation protocol of issue #21 (parameters chosen on folds before the test folds).
--
-- Input: the view `tx_labeled` (tx_id, tx_ts, event_time, customer_id, terminal_id, amount,
-- is_fraud); windows ORDER BY event_time (tx_ts plus tx_id % 1000 nanoseconds). What the
-- language offers beyond sql/features.sql's header:
--   * expressions over window results in the same SELECT (ratios, CASE, COALESCE). COUNT(*) /
--     COUNT(*) is an integer division in SQL: CAST one side AS DOUBLE;
--   * MIN, MAX, STDDEV (sample standard deviation) over RANGE frames; MIN/MAX of tx_ts;
--   * frames that end before the row: INTERVAL '1 nanosecond' PRECEDING is "every earlier
--     transaction" (a same-second one with a smaller tx_id included), so
--     MAX(tx_ts) OVER (... INTERVAL '30 days' PRECEDING AND INTERVAL '1 nanosecond' PRECEDING)
--     is the previous transaction's time, NULL when there is none in 30 days (LAG is refused:
--     it reaches back without bound);
--   * composite entities: PARTITION BY customer_id, terminal_id (the card-terminal pair),
--     keyed online by the pair: one history per pair used within the frame's horizon;
--   * is_fraud only over frames ending at least 7 days (the label delay) before the row.
-- A z-score divides by a standard deviation: it is guarded (CASE WHEN STDDEV(...) > 0.01) so
-- that a frame of equal amounts, whose deviation is 0 up to the last bits of the mean, gives
-- NULL rather than a quotient of rounding residues.
SELECT
  tx_id,
  tx_ts,
  customer_id,
  terminal_id,

  -- The handbook's 15 (chapter 3), as in sql/features.sql.
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
  COALESCE(AVG(is_fraud) OVER (PARTITION BY terminal_id ORDER BY event_time RANGE BETWEEN INTERVAL '37 days' PRECEDING AND INTERVAL '7 days' PRECEDING), 0) AS terminal_risk_30d,

  -- Compromised cards spending unusual amounts (scenario 3): the amount against the card's
  -- usual, its largest earlier amount, and its spread.
  amount / NULLIF(AVG(amount) OVER (PARTITION BY customer_id ORDER BY event_time RANGE BETWEEN INTERVAL '30 days' PRECEDING AND CURRENT ROW), 0) AS amount_vs_customer_avg_30d,
  amount / NULLIF(MAX(amount) OVER (PARTITION BY customer_id ORDER BY event_time RANGE BETWEEN INTERVAL '30 days' PRECEDING AND INTERVAL '1 nanosecond' PRECEDING), 0) AS amount_vs_customer_max_30d,
  STDDEV(amount) OVER (PARTITION BY customer_id ORDER BY event_time RANGE BETWEEN INTERVAL '30 days' PRECEDING AND CURRENT ROW) AS customer_std_amount_30d,
  CASE WHEN STDDEV(amount) OVER (PARTITION BY customer_id ORDER BY event_time RANGE BETWEEN INTERVAL '30 days' PRECEDING AND CURRENT ROW) > 0.01
       THEN (amount - AVG(amount) OVER (PARTITION BY customer_id ORDER BY event_time RANGE BETWEEN INTERVAL '30 days' PRECEDING AND CURRENT ROW))
            / STDDEV(amount) OVER (PARTITION BY customer_id ORDER BY event_time RANGE BETWEEN INTERVAL '30 days' PRECEDING AND CURRENT ROW)
  END AS amount_zscore_customer_30d,

  -- Velocity changes: the last day against the card's 30-day rate (1.0 = as usual).
  CAST(COUNT(*) OVER (PARTITION BY customer_id ORDER BY event_time RANGE BETWEEN INTERVAL '1 day' PRECEDING AND CURRENT ROW) AS DOUBLE) * 30
    / NULLIF(COUNT(*) OVER (PARTITION BY customer_id ORDER BY event_time RANGE BETWEEN INTERVAL '30 days' PRECEDING AND CURRENT ROW), 0) AS customer_velocity_1d_vs_30d,
  SUM(amount) OVER (PARTITION BY customer_id ORDER BY event_time RANGE BETWEEN INTERVAL '1 day' PRECEDING AND CURRENT ROW) * 30
    / NULLIF(SUM(amount) OVER (PARTITION BY customer_id ORDER BY event_time RANGE BETWEEN INTERVAL '30 days' PRECEDING AND CURRENT ROW), 0) AS customer_spend_1d_vs_30d,

  -- Time since the previous transaction, in seconds (30 days when there is none that recent).
  COALESCE((CAST(tx_ts AS BIGINT) - CAST(MAX(tx_ts) OVER (PARTITION BY customer_id ORDER BY event_time RANGE BETWEEN INTERVAL '30 days' PRECEDING AND INTERVAL '1 nanosecond' PRECEDING) AS BIGINT)) / 1000000.0, 2592000.0) AS customer_secs_since_prev,
  COALESCE((CAST(tx_ts AS BIGINT) - CAST(MAX(tx_ts) OVER (PARTITION BY terminal_id ORDER BY event_time RANGE BETWEEN INTERVAL '7 days' PRECEDING AND INTERVAL '1 nanosecond' PRECEDING) AS BIGINT)) / 1000000.0, 604800.0) AS terminal_secs_since_prev,

  -- Compromised terminals (scenario 2): the terminal's traffic now against its usual, and its
  -- known frauds (labels a delay back): how many, any, and whether its risk is rising.
  CAST(COUNT(*) OVER (PARTITION BY terminal_id ORDER BY event_time RANGE BETWEEN INTERVAL '1 day' PRECEDING AND CURRENT ROW) AS DOUBLE) * 30
    / NULLIF(COUNT(*) OVER (PARTITION BY terminal_id ORDER BY event_time RANGE BETWEEN INTERVAL '30 days' PRECEDING AND CURRENT ROW), 0) AS terminal_velocity_1d_vs_30d,
  COALESCE(SUM(is_fraud) OVER (PARTITION BY terminal_id ORDER BY event_time RANGE BETWEEN INTERVAL '14 days' PRECEDING AND INTERVAL '7 days' PRECEDING), 0) AS terminal_nb_fraud_7d,
  COALESCE(MAX(is_fraud) OVER (PARTITION BY terminal_id ORDER BY event_time RANGE BETWEEN INTERVAL '37 days' PRECEDING AND INTERVAL '7 days' PRECEDING), 0) AS terminal_had_fraud_30d,
  COALESCE(AVG(is_fraud) OVER (PARTITION BY terminal_id ORDER BY event_time RANGE BETWEEN INTERVAL '14 days' PRECEDING AND INTERVAL '7 days' PRECEDING), 0)
    - COALESCE(AVG(is_fraud) OVER (PARTITION BY terminal_id ORDER BY event_time RANGE BETWEEN INTERVAL '37 days' PRECEDING AND INTERVAL '7 days' PRECEDING), 0) AS terminal_risk_trend,

  -- Card-terminal novelty: has this card used this terminal in the last 30 days, how often,
  -- and what share of the card's transactions went there.
  COUNT(*) OVER (PARTITION BY customer_id, terminal_id ORDER BY event_time RANGE BETWEEN INTERVAL '30 days' PRECEDING AND INTERVAL '1 nanosecond' PRECEDING) AS card_terminal_nb_tx_30d,
  CASE WHEN COUNT(*) OVER (PARTITION BY customer_id, terminal_id ORDER BY event_time RANGE BETWEEN INTERVAL '30 days' PRECEDING AND INTERVAL '1 nanosecond' PRECEDING) = 0 THEN 1 ELSE 0 END AS card_new_terminal_30d,
  CAST(COUNT(*) OVER (PARTITION BY customer_id, terminal_id ORDER BY event_time RANGE BETWEEN INTERVAL '30 days' PRECEDING AND INTERVAL '1 nanosecond' PRECEDING) AS DOUBLE)
    / NULLIF(COUNT(*) OVER (PARTITION BY customer_id ORDER BY event_time RANGE BETWEEN INTERVAL '30 days' PRECEDING AND INTERVAL '1 nanosecond' PRECEDING), 0) AS card_terminal_share_30d
FROM tx_labeled
