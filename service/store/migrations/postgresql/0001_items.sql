-- As SQLite's 0001; times are DOUBLE PRECISION (PostgreSQL's REAL is 4 bytes).
CREATE TABLE items (
    item_id    TEXT PRIMARY KEY,
    title      TEXT NOT NULL,
    text       TEXT NOT NULL DEFAULT '',
    categories TEXT NOT NULL DEFAULT '[]',
    attributes TEXT NOT NULL DEFAULT '{}',
    updated_at DOUBLE PRECISION NOT NULL
);
