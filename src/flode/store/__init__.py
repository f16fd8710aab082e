"""PostgreSQL storage: embedded server, migrations, resource versions and their index rows."""
