-- trackfence schema 4 (embedded): what the console keeps. Every version of a site's
-- fences (a change is a new version, never an overwrite: configuration drift is a
-- failure mode), and the API's bearer tokens, kept only as SHA-256 digests.
CREATE TABLE site_versions (
    site_id TEXT NOT NULL, version INTEGER NOT NULL, created_ms INTEGER NOT NULL,
    author TEXT NOT NULL, note TEXT NOT NULL, retired INTEGER NOT NULL, document TEXT NOT NULL,
    UNIQUE (site_id, version)
);

CREATE TABLE api_tokens (
    token_sha256 TEXT PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL, supplier TEXT,
    created_ms INTEGER NOT NULL
);

CREATE INDEX events_time ON events (event_ms, device_id, kind, seq);
