-- Message blocks move to a rowid table. As a WITHOUT ROWID table every block row was a key in
-- the table's own index b-tree, and SQLite reads the whole key of an overflowing cell (a block
-- is tens of KiB) to compare it while inserting: each insert read its neighbours back from
-- disk. Now the blocks are appended in rowid order and looked up through a small index.
CREATE TABLE message_blocks_by_rowid (
    id         INTEGER PRIMARY KEY,
    room       TEXT    NOT NULL,
    first_seq  INTEGER NOT NULL,
    last_seq   INTEGER NOT NULL,
    last_at_ms INTEGER NOT NULL,
    data       BLOB    NOT NULL
);
INSERT INTO message_blocks_by_rowid (room, first_seq, last_seq, last_at_ms, data)
    SELECT room, first_seq, last_seq, last_at_ms, data FROM message_blocks ORDER BY room, first_seq;
DROP TABLE message_blocks;
ALTER TABLE message_blocks_by_rowid RENAME TO message_blocks;
-- A room's blocks hold consecutive numbers without overlap, so the last number orders and
-- identifies them: reads and retention by count are range scans of this index.
CREATE UNIQUE INDEX message_blocks_by_room ON message_blocks (room, last_seq);
CREATE INDEX message_blocks_by_time ON message_blocks (last_at_ms);
