CREATE TABLE items (
    item_id    TEXT PRIMARY KEY,
    title      TEXT NOT NULL,
    text       TEXT NOT NULL DEFAULT '',
    categories TEXT NOT NULL DEFAULT '[]',
    attributes TEXT NOT NULL DEFAULT '{}',
    updated_at REAL NOT NULL
);
