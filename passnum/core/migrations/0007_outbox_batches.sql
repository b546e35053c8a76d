-- The outbox keeps one row per batch and input partition, its events packed into one bytea
-- (passnum.core.codec.pack_outcome: a 4-byte count, then per event topic, key, payload and
-- chain link, each a 4-byte big-endian length, -1 for none, and its bytes), instead of one
-- row per event: a batch of 1,000 redemptions wrote and deleted 1,000 rows, now one.
-- Rows left by a crash are converted in place, each into a batch of one event, keeping its
-- id, so the publication order (id order) is unchanged.
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS events bytea;

UPDATE outbox SET events = int4send(1)
    || int4send(octet_length(convert_to(topic, 'UTF8'))) || convert_to(topic, 'UTF8')
    || coalesce(int4send(octet_length(key)) || key, int4send(-1))
    || int4send(octet_length(payload)) || payload
    || CASE WHEN chain_link IS NULL OR octet_length(chain_link) = 0 THEN int4send(-1)
            ELSE int4send(octet_length(chain_link)) || chain_link END
WHERE events IS NULL;

ALTER TABLE outbox ALTER COLUMN events SET NOT NULL;
ALTER TABLE outbox DROP COLUMN topic, DROP COLUMN key, DROP COLUMN payload,
    DROP COLUMN chain_link;
