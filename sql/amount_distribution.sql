-- Amount distribution: genuine vs fraud transactions, by amount bucket.
SELECT CASE
         WHEN amount < 10 THEN '0-10'
         WHEN amount < 50 THEN '10-50'
         WHEN amount < 100 THEN '50-100'
         WHEN amount < 220 THEN '100-220'
         ELSE '220+'
       END AS amount_bucket,
       COUNT(*) AS transactions,
       SUM(is_fraud) AS frauds,
       ROUND(AVG(amount), 2) AS mean_amount,
       ROUND(100.0 * SUM(is_fraud) / COUNT(*), 3) AS fraud_pct
FROM tx_labeled
GROUP BY 1
ORDER BY MIN(amount);
