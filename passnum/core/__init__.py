"""The processing core: settings, topology, codec, log and database access, the batch loop
(state, position and outbox in one transaction), the broker, health and metrics. Knows no
service and no domain rule beyond what routing needs (`passnum.ledger.voucher_codes`)."""
