CREATE TABLE drift_reports (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id       TEXT NOT NULL,
    window_index  INTEGER NOT NULL,
    score         REAL,
    threshold     REAL NOT NULL,
    detected      INTEGER NOT NULL,
    report        TEXT NOT NULL,
    created_at    REAL NOT NULL
);
CREATE UNIQUE INDEX drift_by_user_window ON drift_reports (user_id, window_index);
