-- trackfence schema 6 (embedded): TimescaleDB's column names. Every time column is
-- named for what it is, as TimescaleDB names it (fix_time, received_at, event_time, ...),
-- so both backends' tables have the same columns and one query names them alike. The
-- types stay: here a time is still INTEGER UTC epoch milliseconds (TimescaleDB keeps
-- timestamptz), and every row is kept as it was. SQLite renames a column in place, and
-- rewrites the indexes and unique keys that name it.
DROP VIEW fix_minutes;

ALTER TABLE fixes RENAME COLUMN fix_ms TO fix_time;
ALTER TABLE fixes RENAME COLUMN received_ms TO received_at;
ALTER TABLE fixes RENAME COLUMN decided_ms TO decided_at;
ALTER TABLE fixes RENAME COLUMN alert_ms TO alert_at;

ALTER TABLE events RENAME COLUMN event_ms TO event_time;

ALTER TABLE alerts RENAME COLUMN event_ms TO event_time;
ALTER TABLE alerts RENAME COLUMN published_ms TO published_at;

ALTER TABLE dead_letters RENAME COLUMN received_ms TO received_at;

ALTER TABLE truth RENAME COLUMN time_ms TO time;

ALTER TABLE true_excursions RENAME COLUMN start_ms TO start_time;
ALTER TABLE true_excursions RENAME COLUMN end_ms TO end_time;

ALTER TABLE site_versions RENAME COLUMN created_ms TO created_at;

ALTER TABLE api_tokens RENAME COLUMN created_ms TO created_at;

ALTER TABLE device_alarms RENAME COLUMN alarm_ms TO alarm_time;
ALTER TABLE device_alarms RENAME COLUMN received_ms TO received_at;

ALTER TABLE schema_migrations RENAME COLUMN applied_ms TO applied_at;

-- the per-minute statistics as TimescaleDB names them: each minute's start is `minute`
-- (UTC ms here)
CREATE VIEW fix_minutes AS
SELECT (fix_time / 60000) * 60000 AS minute,
       device_id,
       count(*) AS fixes,
       avg(accuracy_m) AS mean_accuracy_m,
       max(accuracy_m) AS max_accuracy_m,
       min(distance_m) AS min_distance_m,
       sum(state = 'BREACH') AS breach_fixes,
       avg(received_at - fix_time) AS mean_receive_latency_ms,
       max(decided_at - received_at) AS max_decision_latency_ms
FROM fixes
GROUP BY minute, device_id;
