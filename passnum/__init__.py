"""Shared core of passnum: settings, topology, codec, log access, the processing loop,
and the start-up of the broker and the database. The services import it; none copies it."""
