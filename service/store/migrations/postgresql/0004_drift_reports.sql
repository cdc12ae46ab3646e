CREATE TABLE drift_reports (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id       TEXT NOT NULL,
    window_index  INTEGER NOT NULL,
    score         DOUBLE PRECISION,
    threshold     DOUBLE PRECISION NOT NULL,
    detected      INTEGER NOT NULL,
    report        TEXT NOT NULL,
    created_at    DOUBLE PRECISION NOT NULL
);
CREATE UNIQUE INDEX drift_by_user_window ON drift_reports (user_id, window_index);
