CREATE TABLE profiles (
    user_id      TEXT NOT NULL,
    window_index INTEGER NOT NULL,
    window_start REAL NOT NULL,
    window_end   REAL NOT NULL,
    n_events     INTEGER NOT NULL,
    closed       INTEGER NOT NULL,
    summary      TEXT NOT NULL,
    interests    TEXT NOT NULL,
    embedding    BLOB NOT NULL,
    provenance   TEXT NOT NULL,
    source_key   TEXT NOT NULL,
    drift_score  REAL,
    created_at   REAL NOT NULL,
    PRIMARY KEY (user_id, window_index)
);
