"""Block Kit for the run message, the cancel prompt and `/coffee help`: pure data in, dicts
out (the run's forms are in `coffeebuddy.slack.modal_blocks`).

Nothing here talks to Slack or the database. The builders use slack_sdk's block classes
so that `to_dict()` validates Slack's own limits (lengths, required fields) when a
message is built, rather than Slack rejecting it later in a worker.

The action ids, block ids and callback ids below (the forms' too) are a contract with the
interaction handlers: change them only together.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from slack_sdk.models.blocks import (
    ActionsBlock,
    ButtonElement,
    ConfirmObject,
    HeaderBlock,
    Option,
    OverflowMenuElement,
    PlainTextObject,
)

from coffeebuddy.domain.fairness import RULE_SUMMARY
from coffeebuddy.domain.models import (
    RunStatus,
    RunView,
)
from coffeebuddy.slack.blockkit import (
    BlockDict,
    context,
    escape,
    mention,
    mrkdwn,
    pickup_text,
    plural,
    section,
)

# Buttons on the run message. Every button's `value` is the run id.
ACTION_PLACE_ORDER: Final = "place_order"
ACTION_USE_USUAL: Final = "use_usual"
ACTION_EDIT_ORDER: Final = "edit_order"
ACTION_CANCEL_ORDER: Final = "cancel_order"
ACTION_CLOSE_RUN: Final = "close_run"
ACTION_CANCEL_RUN: Final = "cancel_run"
ACTION_EDIT_RUN: Final = "edit_run"
# One tap to volunteer as the runner: the same rule as the order form's tick.
ACTION_ILL_GO: Final = "ill_go"
RUN_ACTIONS_BLOCK_ID: Final = "run_actions"
# The run message's overflow menu ("⋯"): each option's value is "<action>:<run id>", where
# <action> is one of RUN_MENU_ACTIONS. "Cancel run" answers with a button that has the
# confirm dialog (an overflow option can't carry one of its own).
ACTION_RUN_MENU: Final = "run_menu"
ACTION_CANCEL_RUN_PROMPT: Final = "cancel_run_prompt"
RUN_MENU_ACTIONS: Final = (ACTION_CANCEL_ORDER, ACTION_EDIT_RUN, ACTION_CANCEL_RUN_PROMPT)

# `/coffee help` is short; its button shows the rest.
ACTION_HELP_MORE: Final = "help_more"

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
    "How this works: order, or use your usual; whoever started the run closes it and I "
    f"pick the runner. {RULE_SUMMARY} `/coffee help` for more."
)


def _details_lines(view: RunView, *, pickup_label: str, note_label: str) -> list[str]:
    lines = []
    if view.pickup_time is not None:
        lines.append(f"*{pickup_label}:* {pickup_text(view.pickup_time)}")
    if view.note:
        lines.append(f"*{note_label}:* {escape(view.note)}")
    return lines


def rating_value(run_id: str, score: int) -> str:
    return f"{run_id}:{score}"


def parse_rating_value(value: str) -> tuple[str, int] | None:
    """(run id text, score) from a rating button's value; None when it isn't one."""
    run_id, sep, score = value.rpartition(":")
    if not sep or not score.isdigit() or int(score) not in RATING_SCORES:
        return None
    return run_id, int(score)


# --- run message ----------------------------------------------------------------------


def participants_text(user_ids: Sequence[str], *, is_open: bool = True) -> str:
    """Who is in, never what they ordered: the run message is visible to the channel.

    Long lists end in "and N more" so the section stays within Slack's text limit.
    """
    count = len(user_ids)
    if count == 0:
        return "Nobody has ordered yet — be the first" if is_open else "Nobody ordered."
    verb = ("is" if count == 1 else "are") if is_open else ("was" if count == 1 else "were")
    prefix = f"{plural(count, 'person', 'people')} {verb} in: "
    mentions = [mention(uid) for uid in user_ids]
    full = prefix + ", ".join(mentions)
    if len(full) <= MAX_SECTION_CHARS:
        return full
    shown: list[str] = []
    for tag in mentions:
        candidate = [*shown, tag]
        rest = count - len(candidate)
        text = prefix + ", ".join(candidate) + f" and {rest} more"
        if len(text) > MAX_SECTION_CHARS:
            break
        shown = candidate
    return prefix + ", ".join(shown) + f" and {count - len(shown)} more"


def _run_buttons(view: RunView) -> BlockDict:
    """Four actions everyone uses, the rest (mostly the starter's) behind the ⋯ menu, so
    the message stays one row of buttons on a phone."""
    run_id = view.run_id
    count = len(view.participant_ids)
    close_confirm = ConfirmObject(
        title="Close the run now?",
        text=mrkdwn(
            f"{plural(count, 'person is', 'people are')} in. I'll pick the runner and "
            "post the orders. This can't be undone."
        ),
        confirm="Close run",
        deny="Keep it open",
    )
    menu = OverflowMenuElement(
        action_id=ACTION_RUN_MENU,
        options=[
            Option(value=f"{ACTION_CANCEL_ORDER}:{run_id}", text="Cancel my order"),
            Option(value=f"{ACTION_EDIT_RUN}:{run_id}", text="Edit time/note"),
            Option(value=f"{ACTION_CANCEL_RUN_PROMPT}:{run_id}", text="Cancel run…"),
        ],
    )
    elements = [
        ButtonElement(
            text="Order / change", action_id=ACTION_PLACE_ORDER, value=run_id, style="primary"
        ),
        ButtonElement(text="Use my usual", action_id=ACTION_USE_USUAL, value=run_id),
        ButtonElement(text="I'll go", action_id=ACTION_ILL_GO, value=run_id),
        ButtonElement(
            text="Close run", action_id=ACTION_CLOSE_RUN, value=run_id, confirm=close_confirm
        ),
        menu,
    ]
    return ActionsBlock(elements=elements, block_id=RUN_ACTIONS_BLOCK_ID).to_dict()


def cancel_run_prompt(run_id: str) -> list[BlockDict]:
    """The answer to "Cancel run…" in the menu: the real button, with its confirm dialog."""
    confirm = ConfirmObject(
        title="Cancel this coffee run?",
        text=mrkdwn("Everyone's orders are dropped and nobody goes. This can't be undone."),
        confirm="Cancel run",
        deny="Keep it",
        style="danger",
    )
    button = ButtonElement(
        text="Cancel run",
        action_id=ACTION_CANCEL_RUN,
        value=run_id,
        style="danger",
        confirm=confirm,
    )
    return [
        section("Cancel the coffee run? Everyone's orders are dropped."),
        ActionsBlock(elements=[button]).to_dict(),
    ]


def link(url: str | None, label: str) -> str:
    """A mrkdwn link, or the bare label when there is no URL (yet)."""
    return f"<{url}|{label}>" if url else label


def _summary_pointer(view: RunView) -> str:
    return link(view.summary_permalink, "See the orders") + (
        "." if view.summary_permalink else " in the summary."
    )


def _run_status_line(view: RunView) -> str | None:
    match view.status:
        case RunStatus.OPEN:
            return None
        case RunStatus.CLOSED:
            if view.runner_slack_id is None:
                return f"Closed. {_summary_pointer(view)}"
            return f"Closed — {mention(view.runner_slack_id)} is going. {_summary_pointer(view)}"
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
            by = f", order by {pickup_text(view.order_by)}" if view.order_by else ""
            return (
                f"☕ {mention(view.initiator_slack_id)} started a coffee run{by} — "
                f"{len(view.orders)} in so far"
            )
        case RunStatus.CLOSED:
            if view.runner_slack_id is None:
                return "☕ Coffee run closed"
            return f"☕ Coffee run closed — {mention(view.runner_slack_id)} is going"
        case RunStatus.CANCELED:
            return "☕ Coffee run canceled"
        case RunStatus.FAILED:
            return "☕ Coffee run couldn't complete"


def facts_line(view: RunView) -> str:
    """When ordering ends, pickup and place, in one line: "order by *09:27* · pickup 09:32
    · Lobby cafe" (each part only when set)."""
    parts = []
    if view.order_by is not None and view.status is RunStatus.OPEN:
        parts.append(f"order by *{pickup_text(view.order_by)}*")
    if view.pickup_time is not None:
        parts.append(f"pickup {pickup_text(view.pickup_time)}")
    if view.note:
        parts.append(escape(view.note))
    return " · ".join(parts)


def run_message(view: RunView) -> tuple[str, list[BlockDict]]:
    """The channel message for a run: fallback text and blocks.

    It lists who is in but never what they ordered; the orders go to the closing summary
    and the runner's DM only. It leads with who started it and when ordering ends, and
    says the runner is picked at close (the starter is not the runner).
    """
    is_open = view.status is RunStatus.OPEN
    lead = f"*{mention(view.initiator_slack_id)} started a coffee run*"
    facts = facts_line(view)
    intro = [f"{lead}, {facts}" if facts else lead]
    if is_open:
        intro.append("Runner picked fairly at close.")
    blocks = [
        HeaderBlock(text=PlainTextObject(text="☕ Coffee run")).to_dict(),
        section("\n".join(intro)),
        section(participants_text(view.participant_ids, is_open=is_open)),
    ]
    status_line = _run_status_line(view)
    if status_line is not None:
        blocks.append(section(status_line))
    if is_open:
        if view.first_in_channel:
            blocks.append(context(FIRST_RUN_HINT))
        blocks.append(_run_buttons(view))
    return _run_fallback(view), blocks


# --- help -----------------------------------------------------------------------------


def help_text(rule_summary: str) -> str:
    """The `/coffee help` reply (mrkdwn): the few lines people need, on one phone screen.
    `rule_summary` explains how the runner is chosen; the rest is behind "More help"."""
    return "\n".join(
        [
            "*☕ CoffeeBuddy* — a coffee run in one message.",
            "• `/coffee 10:30 Lobby cafe` starts one (time and place optional, your time zone)",
            "• On the run message: *Order / change*, *Use my usual* or *I'll go*; whoever "
            "started it taps *Close run*",
            "• `/coffee stats` — who went lately",
            f"*Who goes:* {rule_summary}",
        ]
    )


def help_blocks(rule_summary: str) -> list[BlockDict]:
    button = ButtonElement(text="More help", action_id=ACTION_HELP_MORE, value="more")
    return [section(help_text(rule_summary)), ActionsBlock(elements=[button]).to_dict()]


def help_more_text() -> str:
    """Behind the "More help" button: every form of `/coffee` and every button."""
    return "\n".join(
        [
            "*Start a run:* `/coffee [time] [note]` — `/coffee`, `/coffee 10:30 Lobby cafe`, "
            "`/coffee in 20m`, `/coffee 3pm`. Times are in your own time zone; the run "
            "closes itself at its *order by* time.",
            "*On the run message:* *Order / change* opens the form (tick _I'll go_ to "
            "volunteer) · *Use my usual* repeats your last order · *I'll go* volunteers in "
            "one tap · *Close run* picks the runner and posts the orders. The ⋯ menu: "
            "cancel my order, edit time/note, cancel run.",
            "Only who is in shows in the channel; the orders appear in the summary and in "
            "the runner's DM.",
            "*More:* `/coffee forget me` — delete your stored usual orders · `/coffee admin` — "
            "channel settings (admins). The CoffeeBuddy Home tab shows your usual and runs.",
        ]
    )
