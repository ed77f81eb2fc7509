-- Riskiest terminals: the 20 terminals with the most labeled frauds, with their fraud share.
SELECT terminal_id,
       COUNT(*) AS transactions,
       SUM(is_fraud) AS frauds,
       ROUND(100.0 * SUM(is_fraud) / COUNT(*), 2) AS fraud_pct,
       MIN(tx_ts) AS first_seen,
       MAX(tx_ts) AS last_seen
FROM tx_labeled
GROUP BY terminal_id
HAVING SUM(is_fraud) > 0
ORDER BY frauds DESC, fraud_pct DESC, terminal_id
LIMIT 20;
