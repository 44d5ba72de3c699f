-- Threads branch: an edited message or a regenerated answer sits beside the earlier one,
-- which is kept. Each message names the message it follows (none for a thread's first);
-- the messages written before this were one line, each after the one before it.
ALTER TABLE messages ADD COLUMN parent_id TEXT;
UPDATE messages SET parent_id = (
    SELECT p.id FROM messages AS p
    WHERE p.thread_id = messages.thread_id AND (p.created_at, p.id) < (messages.created_at, messages.id)
    ORDER BY p.created_at DESC, p.id DESC LIMIT 1
);

-- The idempotency key names the run a `user_message` started: a regenerate starts a run
-- without writing a message.
ALTER TABLE runs ADD COLUMN client_message_id TEXT;
UPDATE runs SET client_message_id = (SELECT m.client_message_id FROM messages AS m WHERE m.id = runs.user_message_id);
CREATE UNIQUE INDEX runs_client_id ON runs(user_id, client_message_id) WHERE client_message_id IS NOT NULL;
