-- Fraud rate per day: transactions, labeled frauds and their share, by UTC day.
-- tx_labeled = transactions with their latest label (is_fraud 1/0), as the features see them.
SELECT CAST(tx_ts AS DATE) AS day,
       COUNT(*) AS transactions,
       SUM(is_fraud) AS frauds,
       ROUND(100.0 * SUM(is_fraud) / COUNT(*), 3) AS fraud_pct
FROM tx_labeled
GROUP BY 1
ORDER BY 1;
