"""Block Kit for every message and modal CoffeeBuddy shows: pure data in, dicts out.

Nothing here talks to Slack or the database. The builders use slack_sdk's block classes
so that `to_dict()` validates Slack's own limits (lengths, required fields) when a
message is built, rather than Slack rejecting it later in a worker.

The action ids, block ids and callback id below are a contract with the interaction
handlers: change them only together.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    CheckboxesElement,
    ConfirmObject,
    ContextBlock,
    HeaderBlock,
    InputBlock,
    MarkdownTextObject,
    Option,
    PlainTextInputElement,
    PlainTextObject,
    SectionBlock,
)
from slack_sdk.models.views import View

from coffeebuddy.domain.models import (
    MAX_NOTE_CHARS,
    MAX_ORDER_CHARS,
    OrderLine,
    RunStatus,
    RunView,
)
from coffeebuddy.domain.summary import grouped_items, normalized_text, total_items
from coffeebuddy.domain.text import escape_mrkdwn

BlockDict = dict[str, Any]

# Buttons on the run message. Every button's `value` is the run id.
ACTION_PLACE_ORDER: Final = "place_order"
ACTION_USE_USUAL: Final = "use_usual"
ACTION_EDIT_ORDER: Final = "edit_order"
ACTION_CANCEL_ORDER: Final = "cancel_order"
ACTION_CLOSE_RUN: Final = "close_run"
ACTION_CANCEL_RUN: Final = "cancel_run"
ACTION_EDIT_RUN: Final = "edit_run"
RUN_ACTIONS_BLOCK_ID: Final = "run_actions"

# The runner's DM: "I can't go" hands the run to the next person; its `value` is the run id.
ACTION_CANT_GO: Final = "cant_go"
RUNNER_ACTIONS_BLOCK_ID: Final = "runner_actions"

# The channel summary: a one-tap rating 1-5 (CSAT). Slack wants action ids unique within
# a block, so each button's is "rate_run_<n>"; its value "<run id>:<n>" is what counts.
ACTION_RATE_RUN: Final = "rate_run"
RATING_BLOCK_ID: Final = "rating"
RATING_SCORES: Final = (1, 2, 3, 4, 5)

# The order modal; its private_metadata is the run id.
CALLBACK_ORDER_MODAL: Final = "order_modal"
CALLBACK_RUN_MODAL: Final = "run_modal"
PICKUP_BLOCK_ID: Final = "pickup"
PICKUP_ACTION_ID: Final = "pickup_time"
NOTE_BLOCK_ID: Final = "note"
NOTE_ACTION_ID: Final = "pickup_note"
ORDER_BLOCK_ID: Final = "order"
ORDER_ACTION_ID: Final = "order_text"
VOLUNTEER_BLOCK_ID: Final = "volunteer"
VOLUNTEER_ACTION_ID: Final = "volunteer_choice"
VOLUNTEER_OPTION_VALUE: Final = "volunteer"
VOLUNTEER_OPTION_TEXT: Final = "I'll go — make me the runner"
ORDER_PLACEHOLDER: Final = "e.g. oat flat white, no sugar"

# Order-list sections carry these block ids (suffixed 1, 2, …) so tests and handlers
# can find the list in both the channel summary and the runner DM.
ORDER_LIST_BLOCK_ID: Final = "order_list"

# Slack's limits: a message holds at most 50 blocks, a section's text at most 3000 chars.
MAX_BLOCKS: Final = 50
MAX_SECTION_CHARS: Final = 3000

FIRST_RUN_HINT: Final = (
    "How this works: place an order or use your usual, the starter closes the run, and "
    "the runner is whoever has served least recently. `/coffee help` for more."
)


def mrkdwn(text: str) -> MarkdownTextObject:
    """Every mrkdwn text object: verbatim, so Slack links no bare URL, channel name or
    user name in text someone typed (our own mentions use the explicit `<@U…>` form)."""
    return MarkdownTextObject(text=text, verbatim=True)


def escape(text: str) -> str:
    """Make user text safe inside mrkdwn: `<!channel>`, `<@U1>` or a plain `@here` must not
    ping anyone, and invisible bidi/zero-width controls must not reorder the message.

    Slack's rule is to escape only &, < and >. Text typed into a modal arrives raw, but
    text from a slash command may arrive already escaped, so an existing &amp;, &lt; or
    &gt; is kept as is: escaping is idempotent and callers need not know the source.
    """
    return escape_mrkdwn(text)


def pickup_text(when: datetime) -> str:
    """A time every reader sees in their own time zone, with a UTC fallback.

    The fallback is what old clients and notifications show instead of the date token.
    """
    # A naive datetime is taken as UTC: the store works in UTC, and `.timestamp()` on a
    # naive value would silently use the server's local zone instead.
    aware = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
    unix = int(aware.timestamp())
    fallback = aware.astimezone(UTC).strftime("%H:%M UTC")
    return f"<!date^{unix}^{{time}}|{fallback}>"


def _plural(count: int, singular: str, plural: str) -> str:
    return f"{count} {singular if count == 1 else plural}"


def _mention(user_id: str) -> str:
    return f"<@{user_id}>"


def _section(text: str, *, block_id: str | None = None) -> BlockDict:
    return SectionBlock(text=mrkdwn(text), block_id=block_id).to_dict()


def _context(text: str) -> BlockDict:
    return ContextBlock(elements=[mrkdwn(text)]).to_dict()


def _details_lines(view: RunView, *, pickup_label: str, note_label: str) -> list[str]:
    lines = []
    if view.pickup_time is not None:
        lines.append(f"*{pickup_label}:* {pickup_text(view.pickup_time)}")
    if view.note:
        lines.append(f"*{note_label}:* {escape(view.note)}")
    return lines


# --- run message ----------------------------------------------------------------------


def participants_text(user_ids: Sequence[str], *, is_open: bool = True) -> str:
    """Who is in, never what they ordered: the run message is visible to the channel.

    Long lists end in "and N more" so the section stays within Slack's text limit.
    """
    count = len(user_ids)
    if count == 0:
        return "Nobody has ordered yet — be the first" if is_open else "Nobody ordered."
    verb = ("is" if count == 1 else "are") if is_open else ("was" if count == 1 else "were")
    prefix = f"{_plural(count, 'person', 'people')} {verb} in: "
    mentions = [_mention(uid) for uid in user_ids]
    full = prefix + ", ".join(mentions)
    if len(full) <= MAX_SECTION_CHARS:
        return full
    shown: list[str] = []
    for mention in mentions:
        candidate = [*shown, mention]
        rest = count - len(candidate)
        text = prefix + ", ".join(candidate) + f" and {rest} more"
        if len(text) > MAX_SECTION_CHARS:
            break
        shown = candidate
    return prefix + ", ".join(shown) + f" and {count - len(shown)} more"


def _run_buttons(run_id: str) -> BlockDict:
    cancel_confirm = ConfirmObject(
        title="Cancel this coffee run?",
        text=mrkdwn("Everyone's orders are dropped and nobody goes. This can't be undone."),
        confirm="Cancel run",
        deny="Keep it",
        style="danger",
    )
    buttons = [
        ButtonElement(
            text="Place order", action_id=ACTION_PLACE_ORDER, value=run_id, style="primary"
        ),
        ButtonElement(text="Use my usual", action_id=ACTION_USE_USUAL, value=run_id),
        ButtonElement(text="Edit my order", action_id=ACTION_EDIT_ORDER, value=run_id),
        ButtonElement(text="Cancel my order", action_id=ACTION_CANCEL_ORDER, value=run_id),
        ButtonElement(text="Close run", action_id=ACTION_CLOSE_RUN, value=run_id),
        ButtonElement(text="Edit time/note", action_id=ACTION_EDIT_RUN, value=run_id),
        ButtonElement(
            text="Cancel run",
            action_id=ACTION_CANCEL_RUN,
            value=run_id,
            style="danger",
            confirm=cancel_confirm,
        ),
    ]
    return ActionsBlock(elements=buttons, block_id=RUN_ACTIONS_BLOCK_ID).to_dict()


def _run_status_line(view: RunView) -> str | None:
    match view.status:
        case RunStatus.OPEN:
            return None
        case RunStatus.CLOSED:
            if view.runner_slack_id is None:
                return "Closed. Summary below."
            return f"Closed — {_mention(view.runner_slack_id)} is on it. Summary below."
        case RunStatus.CANCELED:
            # cancel_reason is written by CoffeeBuddy, not users, and may hold mentions.
            return " ".join(filter(None, ["This run was canceled.", view.cancel_reason]))
        case RunStatus.FAILED:
            # failure_reason is written by CoffeeBuddy, not users, and may hold mentions.
            reason = view.failure_reason or "something went wrong"
            return f"This run couldn't complete: {reason}"


def _run_fallback(view: RunView) -> str:
    # Shown in notifications and by clients that can't render blocks; no order texts.
    match view.status:
        case RunStatus.OPEN:
            return (
                f"☕ {_mention(view.initiator_slack_id)} is doing a coffee run — "
                f"{len(view.orders)} in so far"
            )
        case RunStatus.CLOSED:
            if view.runner_slack_id is None:
                return "☕ Coffee run closed"
            return f"☕ Coffee run closed — {_mention(view.runner_slack_id)} is on it"
        case RunStatus.CANCELED:
            return "☕ Coffee run canceled"
        case RunStatus.FAILED:
            return "☕ Coffee run couldn't complete"


def run_message(view: RunView) -> tuple[str, list[BlockDict]]:
    """The channel message for a run: fallback text and blocks.

    It lists who is in but never what they ordered; the orders go to the closing summary
    and the runner's DM only.
    """
    is_open = view.status is RunStatus.OPEN
    intro = [
        f"{_mention(view.initiator_slack_id)} is doing a coffee run",
        *_details_lines(view, pickup_label="Pickup", note_label="Note"),
    ]
    blocks = [
        HeaderBlock(text=PlainTextObject(text="☕ Coffee run")).to_dict(),
        _section("\n".join(intro)),
        _section(participants_text(view.participant_ids, is_open=is_open)),
    ]
    status_line = _run_status_line(view)
    if status_line is not None:
        blocks.append(_section(status_line))
    if is_open:
        if view.first_in_channel:
            blocks.append(_context(FIRST_RUN_HINT))
        blocks.append(_run_buttons(view.run_id))
    return _run_fallback(view), blocks


# --- order modal ----------------------------------------------------------------------


def order_modal(
    run_id: str,
    *,
    current_text: str | None,
    volunteer: bool,
    pickup: datetime | None,
    note: str | None,
) -> BlockDict:
    """The `view` for views.open; with current_text/volunteer set it edits an order."""
    blocks: list[Block] = []
    details = []
    if pickup is not None:
        details.append(f"*Pickup:* {pickup_text(pickup)}")
    if note:
        details.append(f"*Note:* {escape(note)}")
    if details:
        blocks.append(ContextBlock(elements=[mrkdwn("\n".join(details))]))

    blocks.append(
        InputBlock(
            block_id=ORDER_BLOCK_ID,
            label="Your order",
            element=PlainTextInputElement(
                action_id=ORDER_ACTION_ID,
                placeholder=ORDER_PLACEHOLDER,
                # The stored text is already within the limit; the slice only guards
                # against Slack rejecting the whole view over an over-long initial value.
                initial_value=current_text[:MAX_ORDER_CHARS] if current_text else None,
                max_length=MAX_ORDER_CHARS,
            ),
        )
    )
    option = Option(value=VOLUNTEER_OPTION_VALUE, text=PlainTextObject(text=VOLUNTEER_OPTION_TEXT))
    blocks.append(
        InputBlock(
            block_id=VOLUNTEER_BLOCK_ID,
            label="Runner",
            # An input block (not an actions block) so the choice arrives in the
            # view_submission state; optional so leaving it unticked is valid.
            optional=True,
            element=CheckboxesElement(
                action_id=VOLUNTEER_ACTION_ID,
                options=[option],
                initial_options=[option] if volunteer else None,
            ),
        )
    )
    return View(
        type="modal",
        callback_id=CALLBACK_ORDER_MODAL,
        title="Coffee order",
        submit="Save order",
        close="Cancel",
        private_metadata=run_id,
        blocks=blocks,
    ).to_dict()


def run_modal(run_id: str, *, pickup_local: str | None, note: str | None) -> BlockDict:
    """The initiator's form to change the pickup time or note of an open run.

    `pickup_local` is the current pickup written in the initiator's own time zone
    (e.g. "10:30"); the form takes the same forms as `/coffee`.
    """
    blocks: list[Block] = [
        InputBlock(
            block_id=PICKUP_BLOCK_ID,
            label="Pickup time",
            hint="Like 10:30, 3pm or in 20m, in your time zone. Leave empty for no set time.",
            optional=True,
            element=PlainTextInputElement(
                action_id=PICKUP_ACTION_ID,
                placeholder="e.g. 10:30 or in 20m",
                initial_value=pickup_local or None,
                max_length=40,
            ),
        ),
        InputBlock(
            block_id=NOTE_BLOCK_ID,
            label="Note",
            optional=True,
            element=PlainTextInputElement(
                action_id=NOTE_ACTION_ID,
                placeholder="e.g. Lobby cafe",
                initial_value=note or None,
                max_length=MAX_NOTE_CHARS,
            ),
        ),
    ]
    return View(
        type="modal",
        callback_id=CALLBACK_RUN_MODAL,
        title="Edit coffee run",
        submit="Save",
        close="Cancel",
        private_metadata=run_id,
        blocks=blocks,
    ).to_dict()


def last_call_message(view: RunView, minutes: int) -> tuple[str, list[BlockDict]]:
    """The channel's last call before the run closes. It mentions nobody: those who
    ordered don't need a ping, and the rest can ignore it."""
    count = _plural(len(view.orders), "person", "people")
    text = (
        f"⏰ *Last call for coffee!* The run closes in about {minutes} min "
        f"({count} in so far). Order with the buttons on the run message."
    )
    return "⏰ Last call for coffee", [_section(text)]


# --- order list, summary and DMs ------------------------------------------------------


def order_list_text(orders: Sequence[OrderLine]) -> str:
    """Who wants what, the counts to order at the counter, and the total: one text.

    The channel summary and the runner DM both render exactly this, so the runner and
    the channel never see different lists.
    """
    if not orders:
        return "No orders.\nTotal: 0 items"
    lines = [f"• {_mention(o.slack_user_id)}: {escape(normalized_text(o.text))}" for o in orders]
    counts = ", ".join(f"{count}× {escape(drink)}" for drink, count in grouped_items(orders))
    total = _plural(total_items(orders), "item", "items")
    return "\n".join([*lines, "", counts, f"Total: {total}"])


def _split_text(text: str, limit: int) -> list[str]:
    """Cut text into pieces of at most `limit` chars, at line breaks where possible.

    A single over-long line (the grouped counts with many distinct drinks) is cut after
    a ", ", which never falls inside a mention or an escaped entity.
    """
    pieces: list[str] = []
    current = ""
    for line in text.split("\n"):
        for part in _split_line(line, limit):
            candidate = part if not current else f"{current}\n{part}"
            if len(candidate) <= limit:
                current = candidate
            else:
                pieces.append(current)
                current = part
    pieces.append(current)
    return [piece for piece in pieces if piece.strip()]


def _split_line(line: str, limit: int) -> list[str]:
    if len(line) <= limit:
        return [line]
    parts: list[str] = []
    current = ""
    for chunk in line.split(", "):
        candidate = chunk if not current else f"{current}, {chunk}"
        if len(candidate) <= limit:
            current = candidate
            continue
        if current:
            parts.append(current)
        # A chunk alone over the limit cannot come from real orders (each is at most
        # MAX_ORDER_CHARS before escaping); a hard cut is the last resort.
        while len(chunk) > limit:
            parts.append(chunk[:limit])
            chunk = chunk[limit:]
        current = chunk
    parts.append(current)
    return parts


def order_list_blocks(orders: Sequence[OrderLine], *, max_blocks: int) -> list[BlockDict]:
    """`order_list_text` as sections, split to fit Slack's per-section limit."""
    pieces = _split_text(order_list_text(orders), MAX_SECTION_CHARS)
    if len(pieces) > max_blocks:
        # Only reachable with thousands of orders; say so rather than fail the message.
        pieces = [*pieces[: max_blocks - 1], "… the list is too long to show in full."]
    return [
        _section(piece, block_id=f"{ORDER_LIST_BLOCK_ID}_{i}")
        for i, piece in enumerate(pieces, start=1)
    ]


def _with_order_list(
    head: list[BlockDict], orders: Sequence[OrderLine], tail: Sequence[BlockDict] = ()
) -> list[BlockDict]:
    listed = order_list_blocks(orders, max_blocks=MAX_BLOCKS - len(head) - len(tail))
    return [*head, *listed, *tail]


def summary_message(view: RunView) -> tuple[str, list[BlockDict]]:
    """The closing summary posted in the run's thread/channel, with the full order list."""
    title = "☕ Coffee run closed"
    if view.runner_slack_id is not None:
        title += f" — runner: {_mention(view.runner_slack_id)}"
    lines = [f"*{title}*", *_details_lines(view, pickup_label="Pickup", note_label="Note")]
    head = [_section("\n".join(lines))]
    if view.runner_reason:
        # Written by the fairness rule, not by users; it carries mentions on purpose.
        head.append(_context(view.runner_reason))
    items = _plural(total_items(view.orders), "item", "items")
    return f"{title} — {items}", _with_order_list(head, view.orders, _rating_blocks(view))


def rating_value(run_id: str, score: int) -> str:
    return f"{run_id}:{score}"


def parse_rating_value(value: str) -> tuple[str, int] | None:
    """(run id text, score) from a rating button's value; None when it isn't one."""
    run_id, sep, score = value.rpartition(":")
    if not sep or not score.isdigit() or int(score) not in RATING_SCORES:
        return None
    return run_id, int(score)


def rating_line(view: RunView) -> str:
    if not view.rating_count or view.rating_average is None:
        return "How was this run? Tap a number, 1 (poor) to 5 (great) — for people who took part."
    people = _plural(view.rating_count, "rating", "ratings")
    return (
        f"Rated *{view.rating_average:.1f}* / 5 from {people} — tap a number to rate "
        "or change yours."
    )


def _rating_blocks(view: RunView) -> list[BlockDict]:
    # Plain buttons, one tap each; no confirm dialog (a rating is changed the same way).
    buttons = [
        ButtonElement(
            text=f"{score} ⭐" if score == 5 else str(score),
            action_id=f"{ACTION_RATE_RUN}_{score}",
            value=rating_value(view.run_id, score),
        )
        for score in RATING_SCORES
    ]
    return [
        _context(rating_line(view)),
        ActionsBlock(elements=buttons, block_id=RATING_BLOCK_ID).to_dict(),
    ]


def runner_dm(view: RunView) -> tuple[str, list[BlockDict]]:
    """The private message telling the runner what to fetch, when and where."""
    title = f"You're the runner for the coffee run in <#{view.slack_channel_id}>"
    lines = [f"*{title}*", *_details_lines(view, pickup_label="When", note_label="Where")]
    head = [_section("\n".join(lines)), _cant_go_button(view.run_id)]
    items = _plural(total_items(view.orders), "item", "items")
    return f"☕ {title} — {items}", _with_order_list(head, view.orders)


def _cant_go_button(run_id: str) -> BlockDict:
    confirm = ConfirmObject(
        title="Can't go?",
        text=mrkdwn(
            "The next person by the usual rule becomes the runner, and the channel "
            "summary says so. You can do this once per run."
        ),
        confirm="Hand it on",
        deny="Never mind",
    )
    button = ButtonElement(
        text="I can't go", action_id=ACTION_CANT_GO, value=run_id, confirm=confirm
    )
    return ActionsBlock(elements=[button], block_id=RUNNER_ACTIONS_BLOCK_ID).to_dict()


def reminder_dm(view: RunView) -> tuple[str, list[BlockDict]]:
    """The runner's reminder shortly before pickup, with the same order list."""
    items = _plural(total_items(view.orders), "item", "items")
    people = _plural(len(set(view.participant_ids)), "person", "people")
    if view.pickup_time is not None:
        title = f"⏰ Pickup at {pickup_text(view.pickup_time)} — {items} for {people}"
    else:
        title = f"⏰ Coffee run reminder — {items} for {people}"
    lines = [f"*{title}*"]
    if view.note:
        lines.append(f"*Where:* {escape(view.note)}")
    head = [_section("\n".join(lines))]
    fallback = f"⏰ Coffee run reminder — {items} for {people}"
    return fallback, _with_order_list(head, view.orders)


# --- help -----------------------------------------------------------------------------


def help_text(rule_summary: str) -> str:
    """The `/coffee help` reply (mrkdwn). `rule_summary` explains how the runner is chosen."""
    return "\n".join(
        [
            "*☕ CoffeeBuddy* — start a coffee run and collect everyone's order in one place.",
            "",
            "*Start a run:* `/coffee [time] [note]`",
            "• `/coffee` — a run with no set pickup time",
            "• `/coffee 10:30 Lobby cafe` — pickup at 10:30, with a note",
            "• `/coffee in 20m` — pickup in 20 minutes",
            "• `/coffee 3pm` — pickup at 3pm",
            "Times are in your own time zone.",
            "",
            "*Buttons on the run message:*",
            "• *Place order* — type your drink; tick _I'll go_ to volunteer as runner",
            "• *Use my usual* — repeat your usual order in one click",
            "• *Edit my order* / *Cancel my order* — change your mind while the run is open",
            "• *Close run* / *Cancel run* — for whoever started the run (or an admin): close "
            "picks the runner and posts the summary, cancel drops the run",
            "",
            "Only who is in shows in the channel; the orders appear in the summary and in "
            "the runner's DM.",
            "",
            "*More:* `/coffee stats` — who ran lately and who is next · `/coffee forget me` — "
            "delete your stored usual orders · `/coffee admin` — channel settings (admins)",
            "",
            f"*Who runs:* {rule_summary}",
        ]
    )
