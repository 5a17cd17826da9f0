"""Journal: the append-only event store (SQLite, in-memory) and the status projection."""
