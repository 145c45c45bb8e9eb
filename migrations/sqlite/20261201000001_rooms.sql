-- Rooms and history. A room is known by its lower-case name ('#dev'); `last_seq` is the number of
-- its newest message ever written, so numbers are never reused even after retention removes rows.
CREATE TABLE IF NOT EXISTS rooms (
    name     TEXT    PRIMARY KEY,
    last_seq INTEGER NOT NULL DEFAULT 0
);
-- Chat lines, actions and admin notices (presence is not stored), written in blocks: one row
-- holds consecutive messages of one room from one commit, encoded by the server (see
-- `store::encode_message`), so storing a message costs a few bytes of encoding instead of a
-- row with its own index entries.
CREATE TABLE IF NOT EXISTS message_blocks (
    room       TEXT    NOT NULL,
    first_seq  INTEGER NOT NULL,
    last_seq   INTEGER NOT NULL,
    last_at_ms INTEGER NOT NULL,
    data       BLOB    NOT NULL,
    PRIMARY KEY (room, first_seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS message_blocks_by_time ON message_blocks (last_at_ms);
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
