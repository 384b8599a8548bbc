"""Retention: tiers by age, legal holds, the compressed archive, purges and field
erasure, each removal recorded by a signed tombstone the chain verification honours."""
