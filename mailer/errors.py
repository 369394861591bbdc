"""Errors that services raise for input a person or a program got wrong; each maps to a 4xx, never a 500."""

from __future__ import annotations


class InvalidInput(ValueError):
    """One or more fields are wrong. `errors` maps each field to a sentence a person can act on."""

    def __init__(self, errors: dict[str, str], message: str | None = None):
        self.errors = errors
        super().__init__(message or "; ".join(f"{k}: {v}" for k, v in errors.items()))

    @property
    def sentences(self) -> str:
        """The errors as one line for a person, without the field names (a flash message, a report row)."""
        return "; ".join(self.errors.values())


class NotFound(LookupError):
    """The thing named does not exist (or is not visible to the caller)."""


class Conflict(RuntimeError):
    """The request does not fit the current state, for example sending an issue that was already sent."""
