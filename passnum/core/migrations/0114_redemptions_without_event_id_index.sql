-- The redeemer writes a redemption's event id, never looks a redemption up by it: a close
-- marks the redemptions it paid by voucher id and event id together (services/redeemer/
-- store.py, record_settlement). The unique index on the event id (a random UUID: each
-- insert lands on a random page of it) cost 4.2 of the 12.7 ms of inserting 1,000
-- redemptions into 95,000. Event ids are unique by construction (uuid5 of the request id,
-- and a request is decided once: request_outcomes' key); the voucher id stays the key.
ALTER TABLE redemptions DROP CONSTRAINT IF EXISTS redemptions_event_id_key;
