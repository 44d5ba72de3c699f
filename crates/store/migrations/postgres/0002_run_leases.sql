-- Run ownership across instances: each run records the instance executing it, and each
-- instance renews a lease (its heartbeat). An unfinished run whose instance's lease has
-- expired is taken over by a live instance and ended as interrupted.
ALTER TABLE runs ADD COLUMN owner TEXT;

CREATE TABLE instances (
    id            TEXT PRIMARY KEY,
    started_at    BIGINT NOT NULL,
    heartbeat_at  BIGINT NOT NULL
);
