"""Answers through an interaction's `response_url` (valid 30 minutes, 5 uses)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


def post_ephemeral(
    url: str, text: str, *, timeout: float, blocks: list[dict[str, Any]] | None = None
) -> bool:
    """True when Slack accepted the message; False when the URL expired or was used up.
    Server errors and rate limits raise, so a job can retry them."""
    if not url.startswith(("https://", "http://")):
        return False
    message: dict[str, Any] = {
        "response_type": "ephemeral", "replace_original": False, "text": text,
    }  # fmt: skip
    if blocks:
        message["blocks"] = blocks
    body = json.dumps(message)
    request = urllib.request.Request(  # noqa: S310 (scheme checked above; URL is Slack-signed)
        url, data=body.encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310
            answer.read()
        return True
    except urllib.error.HTTPError as exc:
        if exc.code >= 500 or exc.code == 429:
            raise
        return False
