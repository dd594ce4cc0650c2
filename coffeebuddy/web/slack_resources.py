"""Falcon resources for Slack's slash commands and interactions: parse, one call, answer."""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import falcon

from coffeebuddy import logs
from coffeebuddy.db import DatabaseUnavailable
from coffeebuddy.errors import CoffeeBuddyError
from coffeebuddy.metrics import ERRORS, REQUESTS
from coffeebuddy.service.admin import AdminService
from coffeebuddy.service.commands import Commands
from coffeebuddy.service.common import Actor, Interaction, OrderForm
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
        ia = Interaction(
            actor,
            req.context.correlation_id,
            trigger_id=command.trigger_id,
            response_url=command.response_url,
        )
        with logs.context(channel=command.channel_id):
            reply = self._commands.handle(ia, command.text)
        resp.media = reply.to_slack()


# What a click does, given who clicked where (and on which run).
Responder = Callable[[Interaction], None]
# What a submitted run form does: field errors keyed by block id, or None when saved.
# (The last argument is the response_url of the click that opened the form, if any.)
FormSubmit = Callable[[Actor, uuid.UUID, dict[str, Any], str | None], dict[str, str] | None]

UNKNOWN_ACTION_TEXT = (
    "Sorry, I don't recognise that button — the message may be from an older version of "
    "CoffeeBuddy. Start a new run with `/coffee`."
)


@dataclass(frozen=True)
class RunForm:
    """A modal about a run: where a form-wide error shows, and what submitting it does."""

    first_field: str
    submit: FormSubmit


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
        self._ratings = ratings
        self._stats = stats
        # Built once: the buttons that act on the run whose id they carry...
        self._run_actions: dict[str, Responder] = {
            run_blocks.ACTION_PLACE_ORDER: service.open_order_modal,
            # Messages from before the overflow menu still carry this button.
            run_blocks.ACTION_EDIT_ORDER: service.open_order_modal,
            run_blocks.ACTION_USE_USUAL: service.use_usual,
            run_blocks.ACTION_ILL_GO: service.ill_go,
            run_blocks.ACTION_CANCEL_ORDER: service.cancel_order,
            run_blocks.ACTION_CANCEL_RUN_PROMPT: service.cancel_run_prompt,
            run_blocks.ACTION_CLOSE_RUN: service.close_run,
            run_blocks.ACTION_CANCEL_RUN: service.cancel_run,
            run_blocks.ACTION_EDIT_RUN: service.open_run_modal,
            # Pressed in the runner's DM: the actor's channel is that DM.
            run_blocks.ACTION_CANT_GO: swap.cant_go,
        }
        # ...the others (ratings, whose ids carry the score, are matched by prefix)...
        self._other_actions: dict[str, Responder] = {
            run_blocks.ACTION_HELP_MORE: self._help_more,
            stats_blocks.ACTION_STATS_ALL: self._stats_everyone,
            admin_blocks.ACTION_ADMIN_RESET: self._admin_reset,
        }
        # ...and the modals about a run, by callback id.
        self._run_forms: dict[str, RunForm] = {
            run_blocks.CALLBACK_ORDER_MODAL: RunForm(run_blocks.ORDER_BLOCK_ID, self._order),
            run_blocks.CALLBACK_RUN_MODAL: RunForm(run_blocks.PICKUP_BLOCK_ID, self._run_edit),
        }

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        payload = payloads.interaction(verified_body(req))
        REQUESTS.labels("interaction").inc()
        kind = payload["type"]
        if kind == "block_actions":
            action = payloads.block_action(payload)
            log_fact(
                req,
                action=action.action_id[:64],
                user_id=action.user_id,
                run_id=str(action.run_id) if action.run_id else None,
            )
            self._block_action(action, req.context.correlation_id)
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

    # ---- buttons ---------------------------------------------------------------------

    def _block_action(self, action: payloads.BlockAction, corr: str) -> None:
        actor = Actor(
            user_id=action.user_id,
            channel_id=action.channel_id,
            team_id=action.team_id,
            user_name=action.user_name,
        )
        responder, run_id = self._responder(action)
        ia = Interaction(
            actor,
            corr,
            run_id=run_id,
            trigger_id=action.trigger_id,
            response_url=action.response_url,
        )
        with logs.context(channel=action.channel_id, run=str(run_id) if run_id else None):
            try:
                if responder is None:
                    ERRORS.labels("unknown_action").inc()
                    self._service.notify(ia, UNKNOWN_ACTION_TEXT)
                    return
                responder(ia)
            except DatabaseUnavailable:
                # Slack ignores the body of a block_actions answer; the response_url is the
                # only way left to tell the person.
                ERRORS.labels("database").inc()
                self._respond(ia, DB_DOWN_TEXT)
            except CoffeeBuddyError as exc:
                self._respond(ia, exc.user_message)
            except Exception as exc:
                # Slack ignores a block_actions answer's body, so the generic handler's
                # reply would never be seen: answer through the response_url instead.
                self._respond(ia, internal_error_text(report_internal(exc)))

    def _responder(self, action: payloads.BlockAction) -> tuple[Responder | None, uuid.UUID | None]:
        """What this click does, and the run it acts on (None: none, or not a known one)."""
        on_run = self._run_actions.get(action.action_id)
        if on_run is not None and action.run_id is not None:
            return on_run, action.run_id
        if (rating := _rating(action)) is not None:
            run_id, score = rating
            return functools.partial(self._rate, score=score), run_id
        if action.action_id == admin_blocks.ACTION_ADMIN_RESET and (
            action.value != action.channel_id
        ):
            # A reset button only ever resets the channel it was posted in.
            return None, action.run_id
        return self._other_actions.get(action.action_id), action.run_id

    def _rate(self, ia: Interaction, *, score: int) -> None:
        self._ratings.rate(ia, score)

    def _help_more(self, ia: Interaction) -> None:
        self._service.notify(ia, run_blocks.help_more_text())

    def _stats_everyone(self, ia: Interaction) -> None:
        """ "Show everyone" under a member's short `/coffee stats`: the whole table."""
        reply = self._stats.show(ia.actor, everyone=True)
        self._service.notify(ia, reply.text, blocks=reply.blocks)

    def _admin_reset(self, ia: Interaction) -> None:
        self._admin.reset(ia, ia.actor.channel_id)

    def _respond(self, ia: Interaction, text: str) -> None:
        respond_inline(self._response_urls, ia.response_url, text)

    # ---- modals ----------------------------------------------------------------------

    def _view_submission(self, sub: payloads.ViewSubmission) -> dict[str, Any] | None:
        actor = Actor(
            user_id=sub.user_id, channel_id="", team_id=sub.team_id, user_name=sub.user_name
        )
        submit: Callable[[], dict[str, str] | None]
        if sub.callback_id == admin_blocks.CALLBACK_ADMIN_MODAL and payloads.is_channel_id(
            sub.private_metadata
        ):
            first_field = "enabled"
            submit = functools.partial(
                self._admin.submit_settings, actor, sub.private_metadata, sub.values
            )
        else:
            run_id, form = self._run_form(sub)
            first_field = form.first_field
            submit = functools.partial(form.submit, actor, run_id, sub.values, sub.response_url)
        with logs.context(run=str(sub.run_id) if sub.run_id else None):
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

    def _run_form(self, sub: payloads.ViewSubmission) -> tuple[uuid.UUID, RunForm]:
        form = self._run_forms.get(sub.callback_id)
        if sub.run_id is None or form is None:
            ERRORS.labels("unknown_view").inc()
            problem = "view without a run id" if sub.run_id is None else "unknown view"
            raise falcon.HTTPBadRequest(description=problem)
        return sub.run_id, form

    def _order(
        self, actor: Actor, run_id: uuid.UUID, values: dict[str, Any], response_url: str | None
    ) -> dict[str, str] | None:
        text = payloads.input_text(values, run_blocks.ORDER_BLOCK_ID, run_blocks.ORDER_ACTION_ID)
        volunteer = payloads.checked(
            values,
            run_blocks.VOLUNTEER_BLOCK_ID,
            run_blocks.VOLUNTEER_ACTION_ID,
            run_blocks.VOLUNTEER_OPTION_VALUE,
        )
        return self._service.submit_order(actor, run_id, OrderForm(text, volunteer, response_url))

    def _run_edit(
        self, actor: Actor, run_id: uuid.UUID, values: dict[str, Any], _response_url: str | None
    ) -> dict[str, str] | None:
        pickup = payloads.input_text(
            values, run_blocks.PICKUP_BLOCK_ID, run_blocks.PICKUP_ACTION_ID
        )
        note = payloads.input_text(values, run_blocks.NOTE_BLOCK_ID, run_blocks.NOTE_ACTION_ID)
        return self._service.submit_run_edit(actor, run_id, pickup, note)


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
