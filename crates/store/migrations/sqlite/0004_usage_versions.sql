-- A per-user counter that every import adding rows (and every delete) moves on: the
-- version of the user's dataset, which keys cached analyses.
CREATE TABLE usage_versions (
    user_id  TEXT PRIMARY KEY,
    version  INTEGER NOT NULL
);
