"""Storage: schema, migrations, engines for SQLite and PostgreSQL."""
