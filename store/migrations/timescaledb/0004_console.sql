-- trackfence schema 4: what the console keeps. Every version of a site's fences (a
-- change is a new version, never an overwrite: configuration drift is a failure mode),
-- and the API's bearer tokens, kept only as SHA-256 digests.
CREATE TABLE site_versions (
    site_id    text        NOT NULL,
    version    integer     NOT NULL,
    created_at timestamptz NOT NULL,
    author     text        NOT NULL,
    note       text        NOT NULL,
    retired    boolean     NOT NULL,
    document   text        NOT NULL,
    UNIQUE (site_id, version)
);

CREATE TABLE api_tokens (
    token_sha256 text PRIMARY KEY,
    name         text        NOT NULL,
    role         text        NOT NULL,
    supplier     text,
    created_at   timestamptz NOT NULL
);

-- the breach log is read in time order with a keyset cursor
CREATE INDEX events_time ON events (event_time, device_id, kind, seq);
