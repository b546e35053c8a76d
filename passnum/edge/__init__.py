"""The HTTP edge and the clients: routes and views generated from declarative tables, RFC 9457
problems, OpenAPI, API tokens, the command gateway's client of the log, French reasons."""
