CREATE TABLE events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id    TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    item_id     TEXT NOT NULL,
    type        TEXT NOT NULL,
    ts          REAL NOT NULL,
    value       REAL,
    received_at REAL NOT NULL
);
CREATE UNIQUE INDEX events_by_user_event ON events (user_id, event_id);
CREATE INDEX events_by_user ON events (user_id, ts, seq);
CREATE INDEX events_by_item ON events (item_id, user_id);
