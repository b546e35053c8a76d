"""passnum's shared code, in four layers (each imports only the layers below it, checked by
`tests/unit/test_layers.py`):

- `passnum.tools`: the command line, the demo, the local stack, operator tools on the log;
  the only layer above the services (it mounts their commands).
- `passnum.edge`: HTTP (routes, problems, OpenAPI, tokens) and the clients of the log and of
  the operator routes, for the services' APIs.
- `passnum.core`: settings, topology, codec, log and database access, the processing loop
  (batches, positions, outbox), the broker, health and metrics.
- `passnum.ledger`: the domain rules, pure: one module per aggregate, time and identity.

`schemas` (the message contracts) is below them all; `services` sit between edge and tools.
"""
