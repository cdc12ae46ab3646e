-- Counts the item writes that changed an item: a profile state is stored only if none
-- came between the read of the items it was made from and its own write (a change
-- landing while a window is summarised would otherwise be covered by the new state).
CREATE TABLE item_changes (
    id    INTEGER PRIMARY KEY CHECK (id = 0),
    count INTEGER NOT NULL
);
INSERT INTO item_changes VALUES (0, 0);
