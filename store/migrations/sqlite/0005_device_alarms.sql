-- trackfence schema 5 (embedded): the devices' own alarms. A supplier's device (or its
-- cloud) decides for itself when to vibrate its wearer and reports it on its alarm topic;
-- a trial scores those alarms beside trackfence's own decision on the same fixes.
CREATE TABLE device_alarms (
    device_id   TEXT    NOT NULL,
    seq         INTEGER NOT NULL,
    alarm_ms    INTEGER NOT NULL,  -- on the device's clock
    kind        TEXT    NOT NULL,  -- breach, clear, warning, lost
    lat         REAL,              -- where the device said the wearer was
    lon         REAL,
    received_ms INTEGER NOT NULL,
    UNIQUE (device_id, seq, alarm_ms)
);
CREATE INDEX device_alarms_time ON device_alarms (alarm_ms);
