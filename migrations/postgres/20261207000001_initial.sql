-- The PostgreSQL schema: the same tables as SQLite's (see migrations/sqlite), in one step.
-- Usernames are unique without regard to ASCII case (the rule allows ASCII only) and kept as
-- created; times are kept as the same UTC text SQLite keeps.
CREATE TABLE users (
    id            BIGSERIAL PRIMARY KEY,
    username      TEXT    NOT NULL,
    password_hash TEXT    NOT NULL,
    created_at    TEXT    NOT NULL
        DEFAULT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
    updated_at    TEXT    NOT NULL
        DEFAULT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
    -- Logins refused.
    disabled      BOOLEAN NOT NULL DEFAULT FALSE,
    -- Changes with every password or state change, so that every node notices.
    generation    BIGINT  NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX users_by_name ON users (lower(username));

-- Client certificates bound to accounts, by the SHA-256 of their DER as `serve` prints it.
CREATE TABLE certificates (
    id          BIGSERIAL PRIMARY KEY,
    user_id     BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    fingerprint TEXT   NOT NULL UNIQUE,
    label       TEXT   NOT NULL,
    added_at    TEXT   NOT NULL DEFAULT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD'),
    UNIQUE (user_id, label)
);

-- A room's newest number ever written, so that numbers are never reused.
CREATE TABLE rooms (
    name     TEXT   PRIMARY KEY,
    last_seq BIGINT NOT NULL DEFAULT 0
);

-- Chat lines, actions and admin notices in blocks of consecutive numbers of one room, encoded
-- by the server as in SQLite.
CREATE TABLE message_blocks (
    id         BIGSERIAL PRIMARY KEY,
    room       TEXT   NOT NULL,
    first_seq  BIGINT NOT NULL,
    last_seq   BIGINT NOT NULL,
    last_at_ms BIGINT NOT NULL,
    data       BYTEA  NOT NULL
);
CREATE UNIQUE INDEX message_blocks_by_room ON message_blocks (room, last_seq);
CREATE INDEX message_blocks_by_time ON message_blocks (last_at_ms);

-- The rooms a user joined and did not part (#lobby is implicit).
CREATE TABLE memberships (
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    room    TEXT   NOT NULL,
    PRIMARY KEY (user_id, room)
);

-- The last message of each room a user's peer acknowledged or the user sent.
CREATE TABLE read_positions (
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    room    TEXT   NOT NULL,
    seq     BIGINT NOT NULL,
    PRIMARY KEY (user_id, room)
);
