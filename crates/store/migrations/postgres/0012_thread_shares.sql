-- A thread its owner shares with one of their organizations: the members read it (the
-- messages, runs and their events), nobody but the owner writes to it. Cleared when the
-- owner leaves that organization.
ALTER TABLE threads ADD COLUMN shared_org TEXT;
ALTER TABLE threads ADD COLUMN shared_at BIGINT;
CREATE INDEX threads_by_shared_org ON threads (shared_org, updated_at DESC) WHERE shared_org IS NOT NULL;
