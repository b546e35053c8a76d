-- A restriction is judged in the order the redeemer decided it (docs/auditor.md, "One
-- ledger, one judge"):
-- - the blocks the redeemer applied (`BookletBlockApplied`): a booklet's scans decided after
--   it are refused; `redeemer_booklets.blocked` stays the issuer's report;
-- - when a venue's status last changed: a later change never takes effect before it.
-- (when and by which event is in the log: only the fact is kept here)
CREATE TABLE IF NOT EXISTS redeemer_applied_blocks (booklet_id text PRIMARY KEY);
ALTER TABLE providers ADD COLUMN IF NOT EXISTS changed_at timestamptz;
