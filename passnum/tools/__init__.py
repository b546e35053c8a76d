"""Tools above the services: the `passnum` command line, the demo, the local stack, the
operator's tools on the log and the AsyncAPI document. Only this layer imports services."""
