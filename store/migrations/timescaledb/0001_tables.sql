-- trackfence schema 1: fixes, events, alerts and dead letters as hypertables.
-- Unique keys make every write idempotent; TimescaleDB requires them to include
-- the partitioning time, which a redelivered message repeats exactly.
CREATE EXTENSION IF NOT EXISTS timescaledb;

CREATE TABLE fixes (
    device_id     text             NOT NULL,
    supplier      text             NOT NULL,
    seq           bigint           NOT NULL,
    fix_time      timestamptz      NOT NULL,
    received_at   timestamptz      NOT NULL,
    decided_at    timestamptz      NOT NULL,
    alert_at      timestamptz,
    lat           double precision NOT NULL,
    lon           double precision NOT NULL,
    accuracy_m    double precision,
    fix_type      text,
    satellites    integer,
    hdop          double precision,
    battery_pct   double precision,
    firmware      text,
    source_format text             NOT NULL,
    site          text,
    x_m           double precision,
    y_m           double precision,
    fence         text,
    distance_m    double precision,
    state         text             NOT NULL,
    accepted      boolean          NOT NULL,
    UNIQUE (device_id, seq, fix_time)
);
SELECT create_hypertable('fixes', 'fix_time', chunk_time_interval => INTERVAL '1 day');
CREATE INDEX fixes_device_time ON fixes (device_id, fix_time DESC);

CREATE TABLE events (
    device_id  text             NOT NULL,
    kind       text             NOT NULL,
    event_time timestamptz      NOT NULL,
    seq        bigint           NOT NULL,
    site       text,
    fence      text,
    distance_m double precision,
    UNIQUE (device_id, kind, event_time, seq)
);
SELECT create_hypertable('events', 'event_time', chunk_time_interval => INTERVAL '7 days');
CREATE INDEX events_site_time ON events (site, event_time DESC);

CREATE TABLE alerts (
    device_id    text        NOT NULL,
    kind         text        NOT NULL,
    event_time   timestamptz NOT NULL,
    seq          bigint      NOT NULL,
    published_at timestamptz NOT NULL,
    topic        text        NOT NULL,
    payload      text        NOT NULL,
    UNIQUE (device_id, kind, event_time, seq)
);
SELECT create_hypertable('alerts', 'event_time', chunk_time_interval => INTERVAL '7 days');

CREATE TABLE dead_letters (
    received_at    timestamptz NOT NULL,
    topic          text        NOT NULL,
    reason         text        NOT NULL,
    detail         text        NOT NULL,
    payload        bytea       NOT NULL,
    payload_sha256 bytea       NOT NULL,
    UNIQUE (topic, payload_sha256, received_at)
);
SELECT create_hypertable('dead_letters', 'received_at', chunk_time_interval => INTERVAL '7 days');
CREATE INDEX dead_letters_reason ON dead_letters (reason, received_at DESC);
