-- As SQLite's 0002; seq is an identity column (SQLite's AUTOINCREMENT: never reused).
CREATE TABLE events (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id    TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    item_id     TEXT NOT NULL,
    type        TEXT NOT NULL,
    ts          DOUBLE PRECISION NOT NULL,
    value       DOUBLE PRECISION,
    received_at DOUBLE PRECISION NOT NULL
);
CREATE UNIQUE INDEX events_by_user_event ON events (user_id, event_id);
CREATE INDEX events_by_user ON events (user_id, ts, seq);
CREATE INDEX events_by_item ON events (item_id, user_id);
