-- The processing core: for each processor and input partition, the next offset to decide
-- and the head of the hash chain of the events decided from it. Written in the same
-- transaction as the processor's state and its outbox rows, so a command is decided once.
CREATE TABLE IF NOT EXISTS processor_positions (
    processor       text   NOT NULL,
    topic           text   NOT NULL,
    partition       int    NOT NULL,
    next_offset     bigint NOT NULL DEFAULT 0,
    chain_sequence  bigint NOT NULL DEFAULT 0,
    chain_hash      text   NOT NULL DEFAULT repeat('0', 64),
    PRIMARY KEY (processor, topic, partition)
);

-- The recorded outcome of every request: a retried request_id gets these same bytes back
-- instead of a second decision.
CREATE TABLE IF NOT EXISTS request_outcomes (
    processor    text   NOT NULL,
    request_id   text   NOT NULL,
    fingerprint  text   NOT NULL,
    event_ids    text[] NOT NULL,
    event_types  text[] NOT NULL,
    topics       text[] NOT NULL,
    keys         bytea[] NOT NULL,
    payloads     bytea[] NOT NULL,
    chain_links  bytea[] NOT NULL,
    decided_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (processor, request_id)
);

-- Decided but not yet published events. Deleted once the broker acknowledged them; rows
-- left by a crash are published again (same bytes, same event_id) before newer ones.
CREATE TABLE IF NOT EXISTS outbox (
    id               bigserial PRIMARY KEY,
    processor        text   NOT NULL,
    input_topic      text   NOT NULL,
    input_partition  int    NOT NULL,
    topic            text   NOT NULL,
    key              bytea,
    payload          bytea  NOT NULL,
    chain_link       bytea,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS outbox_by_input ON outbox (processor, input_topic, input_partition, id);
