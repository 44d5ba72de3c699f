-- usage_tag_rollup (0006) holds every end user and API key of a user's usage, one row per
-- name and day at least: the names are read from it, and the separate list (0005), filled
-- by the import statement, is dropped.
DROP TABLE usage_names;
