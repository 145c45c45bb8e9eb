-- Rooms and history. A room is known by its lower-case name ('#dev'); `last_seq` is the number of
-- its newest message ever written, so numbers are never reused even after retention removes rows.
CREATE TABLE IF NOT EXISTS rooms (
    name     TEXT    PRIMARY KEY,
    last_seq INTEGER NOT NULL DEFAULT 0
);
-- Chat lines, actions and admin notices; presence is not stored.
CREATE TABLE IF NOT EXISTS messages (
    room   TEXT    NOT NULL,
    seq    INTEGER NOT NULL,
    at_ms  INTEGER NOT NULL,
    kind   TEXT    NOT NULL,
    sender TEXT,
    body   TEXT    NOT NULL,
    PRIMARY KEY (room, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS messages_by_time ON messages (at_ms);
-- The rooms a user joined and did not part (#lobby is implicit).
CREATE TABLE IF NOT EXISTS memberships (
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    room    TEXT    NOT NULL,
    PRIMARY KEY (user_id, room)
) WITHOUT ROWID;
-- The last message of each room written to a user's socket or sent by the user.
CREATE TABLE IF NOT EXISTS read_positions (
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    room    TEXT    NOT NULL,
    seq     INTEGER NOT NULL,
    PRIMARY KEY (user_id, room)
) WITHOUT ROWID;
