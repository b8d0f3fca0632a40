"""Errors a person can act on: each message says what was refused and what to do instead."""


class AccreteError(Exception):
    """Base of the errors services raise on purpose."""


class TransitionError(AccreteError):
    """A state change that the state machine does not allow from the current state."""


class SelfApprovalError(AccreteError):
    pass


class RoleRequired(AccreteError):
    pass


class GateNotReady(AccreteError):
    pass
