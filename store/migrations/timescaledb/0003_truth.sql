-- trackfence schema 3: ground truth of a run (simulated, or a reference survey), kept
-- beside what the devices reported so a trial can be rescored without rerunning it.
CREATE TABLE truth (
    run_id     text             NOT NULL,
    device_id  text             NOT NULL,
    time       timestamptz      NOT NULL,
    x_m        double precision NOT NULL,
    y_m        double precision NOT NULL,
    inside     boolean          NOT NULL,
    distance_m double precision,
    UNIQUE (run_id, device_id, time)
);
SELECT create_hypertable('truth', 'time', chunk_time_interval => INTERVAL '1 day');

CREATE TABLE true_excursions (
    run_id     text             NOT NULL,
    device_id  text             NOT NULL,
    start_time timestamptz      NOT NULL,
    end_time   timestamptz      NOT NULL,
    depth_m    double precision NOT NULL,
    UNIQUE (run_id, device_id, start_time)
);
