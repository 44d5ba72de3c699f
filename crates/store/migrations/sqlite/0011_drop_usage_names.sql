-- usage_tag_rollup (0010) holds every end user and API key of a user's usage, one row per
-- name and day at least: the names are read from it, and the separate list (0009), with
-- its trigger on every imported row, is dropped.
DROP TRIGGER usage_names_on_insert;
DROP TABLE usage_names;
