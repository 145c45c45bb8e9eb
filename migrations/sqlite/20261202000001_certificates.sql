-- Client certificates bound to accounts, identified by the SHA-256 of their DER in the form
-- `serve` prints (upper-case hex pairs with colons). A certificate belongs to one account;
-- labels are unique per account.
CREATE TABLE IF NOT EXISTS certificates (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    fingerprint TEXT    NOT NULL UNIQUE,
    label       TEXT    NOT NULL,
    added_at    TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%d', 'now')),
    UNIQUE (user_id, label)
);
