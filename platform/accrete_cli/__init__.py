"""The `accrete` command: a thin client of the HTTP API (see main.py)."""
