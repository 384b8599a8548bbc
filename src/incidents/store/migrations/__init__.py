"""Alembic migrations, applied on start and by ``incidents admin migrate``."""
