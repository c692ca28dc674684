"""A project's own session table, as docs/engines.md shows how to make one."""
