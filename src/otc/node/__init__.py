"""One running peer: the I/O edge (Grenache RPC, timers, SQLite) around the pure core."""
