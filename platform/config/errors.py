"""The base of every error a service raises on purpose: each message says what was refused and what
to do instead. Views, commands and tasks turn it into a page, an exit code or a failed job."""


class AccreteError(Exception):
    """Base of the errors services raise on purpose."""
