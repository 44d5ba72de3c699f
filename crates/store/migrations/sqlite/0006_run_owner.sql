-- The instance that executes each run. SQLite serves one instance per file, so at startup
-- every unfinished run owned by another (earlier) instance was left by a crash.
ALTER TABLE runs ADD COLUMN owner TEXT;
