-- What a user's stored profiles were last found up to date with, so a read can tell
-- "nothing changed" from a stamp instead of re-cutting and re-hashing every window;
-- and the recommender's candidate lists for the current profile, kept for reuse.
CREATE TABLE profile_state (
    user_id     TEXT PRIMARY KEY,
    events      TEXT NOT NULL,
    makers      TEXT NOT NULL,
    valid_until DOUBLE PRECISION
);
CREATE TABLE candidate_lists (
    user_id TEXT PRIMARY KEY,
    key     TEXT NOT NULL,
    lists   BYTEA NOT NULL
);
