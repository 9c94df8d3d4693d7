"""Django's PostgreSQL backend with a health check that asks the kernel before it asks the server (see base)."""
