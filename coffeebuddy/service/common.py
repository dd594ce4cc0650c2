"""What every use case takes and gives: who acted where, and the answer they see."""

from __future__ import annotations

import uuid
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
class Interaction:
    """One click, form or command: who acted, on which run, and how to answer them.
    Built once by the web layer and handed whole to the use case, which answers through
    `response_url` and tags what it records with `correlation_id`."""

    actor: Actor
    correlation_id: str
    run_id: uuid.UUID | None = None
    # Opens a modal; Slack honours it for 3 s after the click ("" when there is none).
    trigger_id: str = ""
    # Where an ephemeral answer goes (None: posted to the channel with chat.postEphemeral).
    response_url: str | None = None

    @property
    def run(self) -> uuid.UUID:
        """The run acted on; asked only by run actions, which the web dispatches only
        when the button carries a run id."""
        if self.run_id is None:
            raise ValueError("this interaction names no run")
        return self.run_id


@dataclass(frozen=True)
class OrderForm:
    """What a person saved in the order form, and where its answer goes: the response_url
    of the click that opened the form (None: chat.postEphemeral in the run's channel)."""

    text: str
    volunteer: bool = False
    response_url: str | None = None


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


OTHER_WORKSPACE_TEXT = (
    "This channel's coffee runs belong to another Slack workspace, so CoffeeBuddy can't act "
    "on that here."
)
OTHER_CHANNEL_TEXT = "That button belongs to a coffee run in another channel, so nothing changed."


def misplaced(actor: Actor, *, team_id: str, channel_id: str) -> str | None:
    """Why `actor` may not act on a run of `channel_id` in workspace `team_id` (as
    recorded when the channel was first used), or None. A signed request can still carry
    another workspace's ids (a second install) or replay a button from another channel."""
    if team_id and actor.team_id and actor.team_id != team_id:
        return OTHER_WORKSPACE_TEXT
    # View submissions carry no channel (actor.channel_id == ""): the team check is theirs.
    if actor.channel_id and actor.channel_id != channel_id:
        return OTHER_CHANNEL_TEXT
    return None
