"""Slack's Events API: the `url_verification` handshake and `app_home_opened`.

Signed like every `/slack/` request (the middleware checks it before this runs). Slack
wants a 2xx within 3 seconds and retries otherwise, so the Home tab is published by the
worker; an event we don't use is acknowledged and ignored.
"""

from __future__ import annotations

import json
import logging

import falcon

from coffeebuddy.errors import BadRequest
from coffeebuddy.metrics import REQUESTS
from coffeebuddy.service.home import HomeService
from coffeebuddy.web import payloads
from coffeebuddy.web.access import SlackResource, verified_body

log = logging.getLogger(__name__)

MAX_CHALLENGE = 200


class SlackEvents(SlackResource):
    def __init__(self, home: HomeService) -> None:
        self._home = home

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        try:
            body = json.loads(verified_body(req))
        except ValueError:
            raise BadRequest("event body is not JSON") from None
        if not isinstance(body, dict) or not isinstance(body.get("type"), str):
            raise BadRequest("event without a type")
        REQUESTS.labels("event").inc()
        if body["type"] == "url_verification":
            challenge = body.get("challenge")
            if not isinstance(challenge, str) or not 0 < len(challenge) <= MAX_CHALLENGE:
                raise BadRequest("url_verification without a challenge")
            resp.content_type = falcon.MEDIA_TEXT
            resp.text = challenge
            return
        resp.status = falcon.HTTP_200
        if body["type"] != "event_callback":
            return
        event = body.get("event")
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            raise BadRequest("event_callback without an event")
        log.info("slack_event", extra={"event_type": str(event["type"])[:64]})
        if event["type"] == "app_home_opened" and event.get("tab", "home") == "home":
            user = event.get("user")
            if not isinstance(user, str) or not payloads.is_user_id(user):
                raise BadRequest("app_home_opened without a user")
            self._home.opened(user, correlation_id=req.context.correlation_id)
