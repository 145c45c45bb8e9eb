-- Accounts can be disabled; `generation` changes with every password or state change so that a
-- running server can notice that a logged-in member's account was changed.
ALTER TABLE users ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;
