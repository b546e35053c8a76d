-- A request's recorded outcome becomes one bytea (passnum.core.codec.pack_outcome) instead of
-- six arrays: building the arrays cost more than deciding the request. Existing rows are
-- converted here, in SQL, to exactly the bytes pack_outcome writes: a 4-byte count, then
-- per event topic, key, payload and chain link, each a 4-byte big-endian length (-1 for
-- none) and its bytes. Event ids and types stay inside the payloads.
ALTER TABLE request_outcomes ADD COLUMN IF NOT EXISTS outcome bytea;

UPDATE request_outcomes AS r SET outcome = (
    SELECT int4send(count(*)::int) || coalesce(string_agg(
        int4send(octet_length(convert_to(u.t, 'UTF8'))) || convert_to(u.t, 'UTF8')
        || coalesce(int4send(octet_length(u.k)) || u.k, int4send(-1))
        || int4send(octet_length(u.p)) || u.p
        || CASE WHEN u.l IS NULL OR octet_length(u.l) = 0 THEN int4send(-1)
                ELSE int4send(octet_length(u.l)) || u.l END,
        ''::bytea ORDER BY u.n), ''::bytea)
    FROM unnest(r.topics, r.keys, r.payloads, r.chain_links) WITH ORDINALITY AS u(t, k, p, l, n))
WHERE r.outcome IS NULL;

ALTER TABLE request_outcomes ALTER COLUMN outcome SET NOT NULL;
ALTER TABLE request_outcomes
    DROP COLUMN event_ids, DROP COLUMN event_types, DROP COLUMN topics, DROP COLUMN keys,
    DROP COLUMN payloads, DROP COLUMN chain_links;
