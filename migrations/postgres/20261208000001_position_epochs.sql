-- A read position is a number in the room's numbering as it was when it was read: a cluster
-- whose Redis lost its data numbers every room again from 1 under a new epoch, and a position
-- of an older epoch then counts as the start of the new history (not as a number in it).
-- Rows written before this column existed have '' (no epoch known).
ALTER TABLE read_positions ADD COLUMN epoch TEXT NOT NULL DEFAULT '';
