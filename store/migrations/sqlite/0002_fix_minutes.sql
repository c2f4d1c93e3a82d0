-- trackfence schema 2 (embedded): per-device, per-minute statistics (a plain view here).
CREATE VIEW fix_minutes AS
SELECT (fix_ms / 60000) * 60000 AS minute_ms,
       device_id,
       count(*) AS fixes,
       avg(accuracy_m) AS mean_accuracy_m,
       max(accuracy_m) AS max_accuracy_m,
       min(distance_m) AS min_distance_m,
       sum(state = 'BREACH') AS breach_fixes,
       avg(received_ms - fix_ms) AS mean_receive_latency_ms,
       max(decided_ms - received_ms) AS max_decision_latency_ms
FROM fixes
GROUP BY minute_ms, device_id;
