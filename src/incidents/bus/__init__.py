"""The event bus and the transactional outbox that feeds it."""
