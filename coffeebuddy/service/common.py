"""What every use case takes and gives: who acted where, and the answer they see."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DISABLED_TEXT = (
    "CoffeeBuddy is disabled in this channel — a channel admin can turn it back on "
    "with `/coffee admin`."
)


@dataclass(frozen=True)
class Actor:
    """Who did something, and where."""

    user_id: str
    channel_id: str
    team_id: str = ""
    user_name: str = ""
    channel_name: str = ""


@dataclass(frozen=True)
class Reply:
    """An answer shown to the person who typed the command."""

    text: str
    blocks: list[dict[str, Any]] | None = None
    response_type: str = "ephemeral"

    def to_slack(self) -> dict[str, Any]:
        body: dict[str, Any] = {"response_type": self.response_type, "text": self.text}
        if self.blocks:
            body["blocks"] = self.blocks
        return body
