-- As SQLite's 0003; the embedding (float32 bytes) is BYTEA.
CREATE TABLE profiles (
    user_id      TEXT NOT NULL,
    window_index INTEGER NOT NULL,
    window_start DOUBLE PRECISION NOT NULL,
    window_end   DOUBLE PRECISION NOT NULL,
    n_events     INTEGER NOT NULL,
    closed       INTEGER NOT NULL,
    summary      TEXT NOT NULL,
    interests    TEXT NOT NULL,
    embedding    BYTEA NOT NULL,
    provenance   TEXT NOT NULL,
    source_key   TEXT NOT NULL,
    drift_score  DOUBLE PRECISION,
    created_at   DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (user_id, window_index)
);
