"""One error hierarchy; the web layer turns each into a Slack answer or an HTTP status."""

from __future__ import annotations


class CoffeeBuddyError(Exception):
    """An expected failure with a message a person can act on."""

    def __init__(self, user_message: str) -> None:
        super().__init__(user_message)
        self.user_message = user_message


class BadRequest(CoffeeBuddyError):
    """The request is malformed (HTTP 400)."""
