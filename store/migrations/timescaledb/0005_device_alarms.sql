-- trackfence schema 5: the devices' own alarms. A supplier's device (or its cloud)
-- decides for itself when to vibrate its wearer and reports it on its alarm topic; a
-- trial scores those alarms beside trackfence's own decision on the same fixes.
CREATE TABLE device_alarms (
    device_id   text             NOT NULL,
    seq         bigint           NOT NULL,
    alarm_time  timestamptz      NOT NULL,  -- on the device's clock
    kind        text             NOT NULL,  -- breach, clear, warning, lost
    lat         double precision,           -- where the device said the wearer was
    lon         double precision,
    received_at timestamptz      NOT NULL,
    UNIQUE (device_id, seq, alarm_time)
);
SELECT create_hypertable('device_alarms', 'alarm_time', chunk_time_interval => INTERVAL '7 days');
