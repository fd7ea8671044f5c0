"""WireGuard: key handling, the UAPI codec, state and backends."""
