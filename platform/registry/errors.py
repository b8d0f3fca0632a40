"""Errors of the registry a person can act on: each message says what was refused and what to do instead."""

from config.errors import AccreteError


class TransitionError(AccreteError):
    """A state change that the state machine does not allow from the current state."""


class SelfApprovalError(AccreteError):
    pass


class GateNotReady(AccreteError):
    pass
