-- Which log a position belongs to: the SHA-256 of the key and value of the last record
-- decided on the partition (the record at next_offset - 1). A worker that finds another
-- record there (a broker emptied and refilled, a topic recreated, another cluster) refuses
-- to go on rather than skip commands it never decided (passnum/core/processing.py, LogMismatch).
-- NULL: no record decided yet, or decided before this column existed.
ALTER TABLE processor_positions ADD COLUMN IF NOT EXISTS last_record_sha256 bytea;
