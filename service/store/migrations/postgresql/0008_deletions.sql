-- Counts user deletions, in the store so that every instance over it sees them (the
-- popularity ranking is recounted when events are added or deleted anywhere).
CREATE TABLE deletions (
    id    INTEGER PRIMARY KEY CHECK (id = 0),
    count INTEGER NOT NULL
);
INSERT INTO deletions VALUES (0, 0);
