"""Print shell exports that point the test suite at real PostgreSQL and Redis where they answer.

`make test` evals this: on CI (both reachable) the suite runs against them; elsewhere the service
tests skip and say why. An explicit DATABASE_URL / CELERY_BROKER_URL in the environment wins; pytest-django
runs on a test database beside the named one (test_accrete).
"""

import os
import socket
import sys


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def main() -> None:
    exports = []
    if "DATABASE_URL" not in os.environ:
        if reachable("127.0.0.1", 5432):
            exports.append("export DATABASE_URL=postgres://postgres@127.0.0.1:5432/accrete")
        else:
            print("PostgreSQL not reachable on 127.0.0.1:5432: PostgreSQL-only tests will skip.", file=sys.stderr)
    if "CELERY_BROKER_URL" not in os.environ:
        if reachable("127.0.0.1", 6379):
            exports.append("export CELERY_BROKER_URL=redis://127.0.0.1:6379/15")
        else:
            print("Redis not reachable on 127.0.0.1:6379: Redis-broker tests will skip.", file=sys.stderr)
    print("; ".join(exports) or "true")


if __name__ == "__main__":
    main()
