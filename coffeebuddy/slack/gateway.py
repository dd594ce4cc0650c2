"""The few Slack calls that must happen while Slack waits for our answer.

`views.open` needs a trigger id that expires in 3 seconds, and reading a pickup time needs
the user's time zone; everything else goes through the job queue.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from slack_sdk import WebClient

from coffeebuddy.slack.api import call


@dataclass(frozen=True)
class Profile:
    slack_user_id: str
    display_name: str
    tz: str | None
    is_workspace_admin: bool


class SlackGateway(Protocol):
    def user_profile(self, user_id: str) -> Profile: ...

    def open_view(self, trigger_id: str, view: dict[str, Any]) -> None: ...


class WebSlackGateway:
    def __init__(self, client: WebClient) -> None:
        self._client = client

    def user_profile(self, user_id: str) -> Profile:
        user = call(self._client, "users.info", user=user_id)["user"]
        profile = user.get("profile") or {}
        name = profile.get("display_name") or user.get("real_name") or user.get("name") or ""
        return Profile(
            slack_user_id=user_id,
            display_name=str(name)[:200],
            tz=user.get("tz") or None,
            is_workspace_admin=bool(
                user.get("is_admin") or user.get("is_owner") or user.get("is_primary_owner")
            ),
        )

    def open_view(self, trigger_id: str, view: dict[str, Any]) -> None:
        call(self._client, "views.open", trigger_id=trigger_id, view=view)
