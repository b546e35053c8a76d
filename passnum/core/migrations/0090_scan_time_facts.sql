-- What a back-dated scan is judged against (services/redeemer/domain.py): the instant a
-- booklet was first activated and the instant a venue was last accredited or reinstated.
-- A scan dated before either is refused. NULL on rows written before these were kept: no
-- bound from them (the auditor still judges those scans at their instant).
ALTER TABLE redeemer_booklets ADD COLUMN IF NOT EXISTS activated_at timestamptz;
ALTER TABLE providers ADD COLUMN IF NOT EXISTS accredited_since timestamptz;
