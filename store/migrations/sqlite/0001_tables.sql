-- trackfence schema 1 (embedded): the same tables and keys as TimescaleDB, times in UTC ms.
CREATE TABLE fixes (
    device_id TEXT NOT NULL, supplier TEXT NOT NULL, seq INTEGER NOT NULL,
    fix_ms INTEGER NOT NULL, received_ms INTEGER NOT NULL, decided_ms INTEGER NOT NULL,
    alert_ms INTEGER, lat REAL NOT NULL, lon REAL NOT NULL, accuracy_m REAL, fix_type TEXT,
    satellites INTEGER, hdop REAL, battery_pct REAL, firmware TEXT, source_format TEXT NOT NULL,
    site TEXT, x_m REAL, y_m REAL, fence TEXT, distance_m REAL, state TEXT NOT NULL,
    accepted INTEGER NOT NULL,
    UNIQUE (device_id, seq, fix_ms)
);
CREATE INDEX fixes_device_time ON fixes (device_id, fix_ms);

CREATE TABLE events (
    device_id TEXT NOT NULL, kind TEXT NOT NULL, event_ms INTEGER NOT NULL, seq INTEGER NOT NULL,
    site TEXT, fence TEXT, distance_m REAL,
    UNIQUE (device_id, kind, event_ms, seq)
);
CREATE INDEX events_site_time ON events (site, event_ms);

CREATE TABLE alerts (
    device_id TEXT NOT NULL, kind TEXT NOT NULL, event_ms INTEGER NOT NULL, seq INTEGER NOT NULL,
    published_ms INTEGER NOT NULL, topic TEXT NOT NULL, payload TEXT NOT NULL,
    UNIQUE (device_id, kind, event_ms, seq)
);

CREATE TABLE dead_letters (
    received_ms INTEGER NOT NULL, topic TEXT NOT NULL, reason TEXT NOT NULL, detail TEXT NOT NULL,
    payload BLOB NOT NULL, payload_sha256 BLOB NOT NULL,
    UNIQUE (topic, payload_sha256, received_ms)
);
CREATE INDEX dead_letters_reason ON dead_letters (reason, received_ms);
