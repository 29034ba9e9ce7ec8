"""The worker: one per GPU. Takes queued runs, hosts each in a spawned trainer process,
and moves its events into the record (SQLite) and onto the live feed (Redis)."""
