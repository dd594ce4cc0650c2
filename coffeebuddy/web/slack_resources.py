"""Falcon resources for Slack's slash commands and interactions: parse, one call, answer."""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable
from typing import Any

import falcon

from coffeebuddy import logs
from coffeebuddy.db import DatabaseUnavailable
from coffeebuddy.errors import CoffeeBuddyError
from coffeebuddy.metrics import ERRORS, REQUESTS
from coffeebuddy.service.admin import AdminService
from coffeebuddy.service.commands import Commands
from coffeebuddy.service.common import Actor
from coffeebuddy.service.ratings import RatingService
from coffeebuddy.service.runs import RunService
from coffeebuddy.service.stats import StatsService
from coffeebuddy.service.swap import SwapService
from coffeebuddy.slack import admin_blocks, run_blocks, stats_blocks
from coffeebuddy.slack.response_url import ResponseUrlPolicy, post_ephemeral
from coffeebuddy.store.runs import parse_uuid
from coffeebuddy.web import payloads
from coffeebuddy.web.access import SlackResource, verified_body
from coffeebuddy.web.middleware import log_fact

log = logging.getLogger(__name__)

DB_DOWN_TEXT = "CoffeeBuddy can't reach its database right now, try again in a minute."


def report_internal(exc: BaseException) -> str:
    """Count and log an unexpected error; return the reference the user is given."""
    reference = uuid.uuid4().hex[:8]
    ERRORS.labels("internal").inc()
    log.error("unhandled_error", exc_info=exc, extra={"reference": reference})
    return reference


def internal_error_text(reference: str) -> str:
    return (
        "Something went wrong on CoffeeBuddy's side, sorry. Please try again; if it keeps "
        f"happening, tell your CoffeeBuddy operators and quote reference `{reference}`."
    )


class SlackCommands(SlackResource):
    def __init__(self, commands: Commands) -> None:
        self._commands = commands

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        command = payloads.slash_command(verified_body(req))
        REQUESTS.labels("slash").inc()
        actor = Actor(
            user_id=command.user_id,
            channel_id=command.channel_id,
            team_id=command.team_id,
            user_name=command.user_name,
            channel_name=command.channel_name,
        )
        log_fact(req, action="slash_command", user_id=command.user_id)
        with logs.context(channel=command.channel_id):
            reply = self._commands.handle(
                actor,
                command.text,
                trigger_id=command.trigger_id,
                response_url=command.response_url,
                correlation_id=req.context.correlation_id,
            )
        resp.media = reply.to_slack()


class SlackInteractions(SlackResource):
    def __init__(
        self,
        service: RunService,
        admin: AdminService,
        *,
        swap: SwapService,
        ratings: RatingService,
        stats: StatsService,
        response_urls: ResponseUrlPolicy,
    ) -> None:
        self._response_urls = response_urls
        self._service = service
        self._admin = admin
        self._swap = swap
        self._ratings = ratings
        self._stats = stats

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        payload = payloads.interaction(verified_body(req))
        REQUESTS.labels("interaction").inc()
        kind = payload["type"]
        corr = req.context.correlation_id
        if kind == "block_actions":
            action = payloads.block_action(payload)
            log_fact(
                req,
                action=action.action_id[:64],
                user_id=action.user_id,
                run_id=str(action.run_id) if action.run_id else None,
            )
            self._block_action(action, corr)
            resp.status = falcon.HTTP_200
        elif kind == "view_submission":
            submission = payloads.view_submission(payload)
            log_fact(
                req,
                action=f"view_submission:{submission.callback_id[:48]}",
                user_id=submission.user_id,
                run_id=str(submission.run_id) if submission.run_id else None,
            )
            answer = self._view_submission(submission)
            if answer is not None:
                resp.media = answer
        # Other interaction types (view_closed, shortcuts) need no answer.

    def _block_action(self, action: payloads.BlockAction, corr: str) -> None:
        actor = Actor(
            user_id=action.user_id,
            channel_id=action.channel_id,
            team_id=action.team_id,
            user_name=action.user_name,
        )
        service = self._service
        run_id = action.run_id
        handlers: dict[str, Callable[[uuid.UUID], None]] = {
            run_blocks.ACTION_PLACE_ORDER: lambda r: service.open_order_modal(
                actor,
                r,
                trigger_id=action.trigger_id,
                response_url=action.response_url,
                correlation_id=corr,
            ),
            run_blocks.ACTION_ILL_GO: lambda r: service.ill_go(
                actor,
                r,
                trigger_id=action.trigger_id,
                response_url=action.response_url,
                correlation_id=corr,
            ),
            run_blocks.ACTION_CANCEL_RUN_PROMPT: lambda r: service.cancel_run_prompt(
                actor, r, response_url=action.response_url, correlation_id=corr
            ),
            # Messages from before the overflow menu still carry this button.
            run_blocks.ACTION_EDIT_ORDER: lambda r: service.open_order_modal(
                actor,
                r,
                trigger_id=action.trigger_id,
                response_url=action.response_url,
                correlation_id=corr,
            ),
            run_blocks.ACTION_USE_USUAL: lambda r: service.use_usual(
                actor,
                r,
                trigger_id=action.trigger_id,
                response_url=action.response_url,
                correlation_id=corr,
            ),
            run_blocks.ACTION_CANCEL_ORDER: lambda r: service.cancel_order(
                actor, r, response_url=action.response_url, correlation_id=corr
            ),
            run_blocks.ACTION_CLOSE_RUN: lambda r: service.close_run(
                actor, r, response_url=action.response_url, correlation_id=corr
            ),
            run_blocks.ACTION_CANCEL_RUN: lambda r: service.cancel_run(
                actor, r, response_url=action.response_url, correlation_id=corr
            ),
            run_blocks.ACTION_EDIT_RUN: lambda r: service.open_run_modal(
                actor,
                r,
                trigger_id=action.trigger_id,
                response_url=action.response_url,
                correlation_id=corr,
            ),
            # Pressed in the runner's DM: `actor.channel_id` is that DM.
            run_blocks.ACTION_CANT_GO: lambda r: self._swap.cant_go(
                actor, r, response_url=action.response_url, correlation_id=corr
            ),
        }
        run_handler = handlers.get(action.action_id)
        handler: Callable[[], None] | None = None
        rating = _rating(action)
        if run_handler is not None and run_id is not None:
            handler = functools.partial(run_handler, run_id)
        elif rating is not None:
            run_id = rating[0]
            handler = functools.partial(
                self._ratings.rate,
                actor,
                rating[0],
                rating[1],
                response_url=action.response_url,
                correlation_id=corr,
            )
        elif action.action_id == run_blocks.ACTION_HELP_MORE:
            handler = functools.partial(
                service.notify,
                actor,
                run_blocks.help_more_text(),
                response_url=action.response_url,
                correlation_id=corr,
            )
        elif action.action_id == stats_blocks.ACTION_STATS_ALL:
            handler = functools.partial(self._stats_everyone, actor, action.response_url, corr)
        elif action.action_id == admin_blocks.ACTION_ADMIN_RESET and (
            action.value == action.channel_id
        ):
            handler = functools.partial(
                self._admin.reset,
                actor,
                action.channel_id,
                response_url=action.response_url,
                correlation_id=corr,
            )
        with logs.context(channel=action.channel_id, run=str(run_id) if run_id else None):
            try:
                if handler is None:
                    ERRORS.labels("unknown_action").inc()
                    service.notify(
                        actor,
                        "Sorry, I don't recognise that button — the message may be from an "
                        "older version of CoffeeBuddy. Start a new run with `/coffee`.",
                        response_url=action.response_url,
                        correlation_id=corr,
                    )
                    return
                handler()
            except DatabaseUnavailable:
                # Slack ignores the body of a block_actions answer; the response_url is the
                # only way left to tell the person.
                ERRORS.labels("database").inc()
                respond_inline(self._response_urls, action.response_url, DB_DOWN_TEXT)
            except CoffeeBuddyError as exc:
                respond_inline(self._response_urls, action.response_url, exc.user_message)
            except Exception as exc:
                # Slack ignores a block_actions answer's body, so the generic handler's
                # reply would never be seen: answer through the response_url instead.
                respond_inline(
                    self._response_urls,
                    action.response_url,
                    internal_error_text(report_internal(exc)),
                )

    def _stats_everyone(self, actor: Actor, response_url: str | None, corr: str) -> None:
        """ "Show everyone" under a member's short `/coffee stats`: the whole table."""
        reply = self._stats.show(actor, everyone=True)
        self._service.notify(
            actor, reply.text, response_url=response_url, correlation_id=corr, blocks=reply.blocks
        )

    def _view_submission(self, sub: payloads.ViewSubmission) -> dict[str, Any] | None:
        actor = Actor(
            user_id=sub.user_id, channel_id="", team_id=sub.team_id, user_name=sub.user_name
        )
        values = sub.values
        run_id = sub.run_id
        submit: Callable[[], dict[str, str] | None]
        if sub.callback_id == admin_blocks.CALLBACK_ADMIN_MODAL and payloads.is_channel_id(
            sub.private_metadata
        ):
            first_field = "enabled"
            submit = functools.partial(
                self._admin.submit_settings, actor, sub.private_metadata, values
            )
        elif run_id is None:
            ERRORS.labels("unknown_view").inc()
            raise falcon.HTTPBadRequest(description="view without a run id")
        elif sub.callback_id == run_blocks.CALLBACK_ORDER_MODAL:
            first_field = run_blocks.ORDER_BLOCK_ID
            submit = lambda: self._service.submit_order(  # noqa: E731
                actor,
                run_id,
                payloads.input_text(values, run_blocks.ORDER_BLOCK_ID, run_blocks.ORDER_ACTION_ID),
                volunteer=payloads.checked(
                    values,
                    run_blocks.VOLUNTEER_BLOCK_ID,
                    run_blocks.VOLUNTEER_ACTION_ID,
                    run_blocks.VOLUNTEER_OPTION_VALUE,
                ),
            )
        elif sub.callback_id == run_blocks.CALLBACK_RUN_MODAL:
            first_field = run_blocks.PICKUP_BLOCK_ID
            submit = lambda: self._service.submit_run_edit(  # noqa: E731
                actor,
                run_id,
                payloads.input_text(
                    values, run_blocks.PICKUP_BLOCK_ID, run_blocks.PICKUP_ACTION_ID
                ),
                payloads.input_text(values, run_blocks.NOTE_BLOCK_ID, run_blocks.NOTE_ACTION_ID),
            )
        else:
            ERRORS.labels("unknown_view").inc()
            raise falcon.HTTPBadRequest(description="unknown view")
        with logs.context(run=str(run_id) if run_id else None):
            try:
                errors = submit()
            except DatabaseUnavailable:
                ERRORS.labels("database").inc()
                errors = {first_field: DB_DOWN_TEXT}
            except CoffeeBuddyError as exc:
                # An expected failure the person can act on (Slack couldn't tell us their
                # time zone): shown on the form, as a button's is through its response_url.
                errors = {first_field: exc.user_message}
            except Exception as exc:
                # A modal only shows field errors; any other answer reads as "trouble connecting".
                errors = {first_field: internal_error_text(report_internal(exc))}
        if errors:
            return {"response_action": "errors", "errors": errors}
        return None


def _rating(action: payloads.BlockAction) -> tuple[uuid.UUID, int] | None:
    """(run id, score) for a tap on a summary's rating buttons."""
    if not action.action_id.startswith(f"{run_blocks.ACTION_RATE_RUN}_"):
        return None
    parsed = run_blocks.parse_rating_value(action.value)
    run_id = parse_uuid(parsed[0]) if parsed else None
    if parsed is None or run_id is None:
        return None
    return run_id, parsed[1]


def respond_inline(policy: ResponseUrlPolicy, response_url: str | None, text: str) -> None:
    """Best-effort ephemeral answer through the interaction's response_url."""
    if not response_url:
        return
    try:
        post_ephemeral(response_url, text, timeout=1.5, policy=policy)
    except OSError:
        log.warning("response_url_failed")
