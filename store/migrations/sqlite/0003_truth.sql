-- trackfence schema 3 (embedded): ground truth of a run, times in UTC ms.
CREATE TABLE truth (
    run_id TEXT NOT NULL, device_id TEXT NOT NULL, time_ms INTEGER NOT NULL,
    x_m REAL NOT NULL, y_m REAL NOT NULL, inside INTEGER NOT NULL, distance_m REAL,
    UNIQUE (run_id, device_id, time_ms)
);

CREATE TABLE true_excursions (
    run_id TEXT NOT NULL, device_id TEXT NOT NULL, start_ms INTEGER NOT NULL,
    end_ms INTEGER NOT NULL, depth_m REAL NOT NULL,
    UNIQUE (run_id, device_id, start_ms)
);
