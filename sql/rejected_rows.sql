-- Quarantine: why ingested rows were refused, most common reasons first.
SELECT source, reason, COUNT(*) AS rows, MIN(row_number) AS first_row
FROM transactions_rejected
GROUP BY source, reason
ORDER BY rows DESC
LIMIT 50;
