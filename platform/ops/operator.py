"""Operator commands act as the operator: no user account and no credential, so no rule that needs a person
(four eyes, an approval) can be met through them. Their changes are audited under the operator's login and
host, e.g. "operator root@build-7 (manage.py gate)"."""

import getpass
import socket
from functools import wraps

from audit.actors import operating_as


def operator_label(command: str) -> str:
    try:
        who = getpass.getuser()
    except (KeyError, OSError):
        who = "unknown"
    return f"operator {who}@{socket.gethostname()} (manage.py {command})"


def as_operator(command: str):
    """Decorate a command's handle(): every change it makes is audited as the operator."""

    def decorate(handle):
        @wraps(handle)
        def wrapper(self, *args, **opts):
            with operating_as(operator_label(command)):
                return handle(self, *args, **opts)

        return wrapper

    return decorate
