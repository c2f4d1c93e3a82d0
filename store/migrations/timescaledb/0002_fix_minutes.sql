-- trackfence schema 2: per-device, per-minute statistics.
-- With the Timescale License edition (Timescale's own images, docker-compose.yml)
-- this is a continuous aggregate kept fresh by a policy. The Apache edition
-- (Debian's package) has no continuous aggregates, so there it is an ordinary
-- materialized view over the same query, refreshed by the store on request.
DO $migration$
DECLARE
    body text := $q$
        SELECT time_bucket(INTERVAL '1 minute', fix_time) AS minute,
               device_id,
               count(*)                                                   AS fixes,
               avg(accuracy_m)                                            AS mean_accuracy_m,
               max(accuracy_m)                                            AS max_accuracy_m,
               min(distance_m)                                            AS min_distance_m,
               count(*) FILTER (WHERE state = 'BREACH')                   AS breach_fixes,
               avg(EXTRACT(EPOCH FROM (received_at - fix_time)) * 1000)   AS mean_receive_latency_ms,
               max(EXTRACT(EPOCH FROM (decided_at - received_at)) * 1000) AS max_decision_latency_ms
        FROM fixes
        GROUP BY minute, device_id $q$;
BEGIN
    IF current_setting('timescaledb.license', true) = 'timescale' THEN
        EXECUTE 'CREATE MATERIALIZED VIEW fix_minutes WITH (timescaledb.continuous) AS '
                || body || ' WITH NO DATA';
        PERFORM add_continuous_aggregate_policy('fix_minutes',
            start_offset => INTERVAL '1 day',
            end_offset => INTERVAL '1 minute',
            schedule_interval => INTERVAL '1 minute');
    ELSE
        EXECUTE 'CREATE MATERIALIZED VIEW fix_minutes AS ' || body || ' WITH NO DATA';
        CREATE UNIQUE INDEX fix_minutes_key ON fix_minutes (minute, device_id);
    END IF;
END
$migration$;
