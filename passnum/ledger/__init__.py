"""The ledger: every rule of the domain, written once and pure (no I/O, no clock, no Kafka,
no database). One module per aggregate, each with its state, `evolve` and refusal rules:

- `envelope`: a collectivité's envelope: registration, funding, orders, activation order;
- `booklet`: a booklet's life at the issuer, and its facts as the redeemer sees them;
- `voucher`: a voucher's redemption, check and cancellation, and the precedence of refusals;
- `venue`: a venue's accreditation, suspension and revocation;
- `settlement_month`: the month a redemption is paid in, and when a month has ended;
- `time`: France's time zone, the calendar day of an instant, the clock tolerance;
- `identity`: deterministic event and booklet identifiers; `voucher_codes`: printed codes.

The issuer and the redeemer decide with it; the auditor judges with it (its faster columns and
compiled fold are proven equal to it by `tests/unit/test_ledger_accelerations.py`)."""
