"""A throwaway PostgreSQL database for a benchmark, beside the one DATABASE_URL names (the benches that run
a server against a real registry use it; without a URL they use a SQLite file in a temp folder)."""

import os
from urllib.parse import urlsplit, urlunsplit


def scratch_postgres(url: str, label: str) -> tuple[str, str]:
    """A fresh database `accrete_bench_<label>_<pid>` on the server `url` names: (its URL, the maintenance
    URL to drop it through)."""
    import psycopg

    parts = urlsplit(url)
    name = f"accrete_bench_{label}_{os.getpid()}"
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit(parts._replace(path=f"/{name}")), admin


def scratch_postgres_drop(url: str, admin: str) -> None:
    import psycopg
    from django.db import connections

    connections.close_all()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{urlsplit(url).path.lstrip("/")}" WITH (FORCE)')
