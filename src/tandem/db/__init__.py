"""PostgreSQL: schema, sessions and migrations."""
