"""Block Kit for what a run sends once ordering ends: the channel summary, the runner's DM,
the reminder, the last call and the "runner changed" thread reply. Pure data in, dicts out.

The summary is a new channel post, so it notifies everyone it mentions: it names people
by their plain names and mentions only the runner, once. Each message's top-level `text`
is what a phone shows in a notification, so it stands alone ("☕ You're the runner: 8
orders, pickup 09:32, Lobby cafe").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from slack_sdk.models.blocks import ActionsBlock, ButtonElement, ConfirmObject

from coffeebuddy.domain.models import OrderLine, RunView
from coffeebuddy.domain.summary import grouped_items, normalized_text, total_items
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
from coffeebuddy.slack.run_blocks import (
    ACTION_CANT_GO,
    ACTION_RATE_RUN,
    MAX_BLOCKS,
    MAX_SECTION_CHARS,
    ORDER_LIST_BLOCK_ID,
    RATING_BLOCK_ID,
    RATING_SCORES,
    RUNNER_ACTIONS_BLOCK_ID,
    link,
    rating_value,
)

# Read out by screen readers for each rating button ("Rate this run 1 of 5, poor").
RATING_WORDS: Final = {1: "poor", 2: "fair", 3: "okay", 4: "good", 5: "great"}


def person_name(order: OrderLine) -> str:
    """A participant's plain name, escaped: it is typed by people, and a summary line must
    not notify them (the Slack id only when no name is known)."""
    return escape(order.name) if order.name else order.slack_user_id


def _orders(count: int) -> str:
    # "orders", not "items": one order can be three things.
    return plural(count, "order", "orders")


def _where_when(view: RunView) -> str:
    """ "pickup 09:32, Lobby cafe" (each part only when set)."""
    parts = []
    if view.pickup_time is not None:
        parts.append(f"pickup {pickup_text(view.pickup_time)}")
    if view.note:
        parts.append(escape(view.note))
    return ", ".join(parts)


# --- the order list -------------------------------------------------------------------


def to_buy_text(orders: Sequence[OrderLine]) -> str | None:
    """The counter's shopping list, only where the list above doesn't already say it at a
    glance: drinks ordered twice or more ("*To buy:* 3× flat white · 2× oat latte, extra
    hot"). Drinks are separated by " · ", so a comma inside one order reads as part of it."""
    repeated = [(drink, n) for drink, n in grouped_items(orders) if n >= 2]
    if not repeated:
        return None
    return "*To buy:* " + " · ".join(f"{n}× {escape(drink)}" for drink, n in repeated)


def order_list_text(orders: Sequence[OrderLine]) -> str:
    """Who wants what, the repeated drinks, and the number of orders: one text.

    The channel summary and the runner DM both render exactly this, so the runner and
    the channel never see different lists.
    """
    if not orders:
        return "No orders."
    lines = [f"• {person_name(o)}: {escape(normalized_text(o.text))}" for o in orders]
    to_buy = to_buy_text(orders)
    tail = [to_buy] if to_buy else []
    return "\n".join([*lines, *tail, _orders(total_items(orders))])


def _split_text(text: str, limit: int) -> list[str]:
    """Cut text into pieces of at most `limit` chars, at line breaks where possible.

    A single over-long line (the repeated drinks) is cut after a " · ", which never falls
    inside an escaped entity.
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
    for chunk in line.split(" · "):
        candidate = chunk if not current else f"{current} · {chunk}"
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
        section(piece, block_id=f"{ORDER_LIST_BLOCK_ID}_{i}")
        for i, piece in enumerate(pieces, start=1)
    ]


def _with_order_list(
    head: list[BlockDict], orders: Sequence[OrderLine], tail: Sequence[BlockDict] = ()
) -> list[BlockDict]:
    listed = order_list_blocks(orders, max_blocks=MAX_BLOCKS - len(head) - len(tail))
    return [*head, *listed, *tail]


# --- the channel summary --------------------------------------------------------------


def summary_message(view: RunView) -> tuple[str, list[BlockDict]]:
    """The closing summary in the channel: the runner (the one mention), where and when,
    why them, the orders and the rating buttons."""
    orders = _orders(total_items(view.orders))
    if view.runner_slack_id is not None:
        title = f"☕ Coffee run closed — {mention(view.runner_slack_id)} is going"
    else:
        title = "☕ Coffee run closed"
    lines = [f"*{title}*"]
    if where_when := _where_when(view):
        lines.append(where_when[0].upper() + where_when[1:])
    head = [section("\n".join(lines))]
    if view.runner_reason:
        # Plain words from the fairness rule; names in it are typed by people.
        head.append(context(escape(view.runner_reason)))
    return f"{title}: {orders}", _with_order_list(head, view.orders, _rating_blocks(view))


def rating_line(view: RunView) -> str:
    if not view.rating_count or view.rating_average is None:
        return "How was this run? Tap 1 (poor) to 5 (great), if you took part."
    people = plural(view.rating_count, "rating", "ratings")
    return f"Rated *{view.rating_average:.1f}* / 5 from {people} — tap to rate or change yours."


def _rating_blocks(view: RunView) -> list[BlockDict]:
    # Plain buttons, one tap each; no confirm dialog (a rating is changed the same way).
    # A screen reader reads the accessibility label, not a bare "1".
    buttons = [
        ButtonElement(
            text=f"{score} ⭐" if score == 5 else str(score),
            action_id=f"{ACTION_RATE_RUN}_{score}",
            value=rating_value(view.run_id, score),
            accessibility_label=f"Rate this run {score} of 5, {RATING_WORDS[score]}",
        )
        for score in RATING_SCORES
    ]
    return [
        context(rating_line(view)),
        ActionsBlock(elements=buttons, block_id=RATING_BLOCK_ID).to_dict(),
    ]


def runner_changed_text(new_runner: str, old_runner: str) -> str:
    """The thread reply under the summary when the runner hands on: plain names, so it
    notifies nobody ("🔁 Runner changed: Ana instead of Gus.")."""
    return f"🔁 Runner changed: {escape(new_runner)} instead of {escape(old_runner)}."


# --- direct messages ------------------------------------------------------------------


def runner_dm(view: RunView) -> tuple[str, list[BlockDict]]:
    """The private message telling the runner what to fetch, when and where."""
    orders = _orders(total_items(view.orders))
    where_when = _where_when(view)
    text = f"☕ You're the runner: {orders}" + (f", {where_when}" if where_when else "")
    lines = [f"*You're the runner for the coffee run in <#{view.slack_channel_id}>*"]
    if where_when:
        lines.append(where_when[0].upper() + where_when[1:])
    head = [section("\n".join(lines)), _cant_go_button(view.run_id)]
    return text, _with_order_list(head, view.orders)


def _cant_go_button(run_id: str) -> BlockDict:
    confirm = ConfirmObject(
        title="Can't go?",
        text=mrkdwn(
            "The next person by the usual rule becomes the runner, and the channel "
            "is told in the summary's thread. You can do this once per run."
        ),
        confirm="Hand it on",
        deny="Never mind",
    )
    button = ButtonElement(
        text="I can't go", action_id=ACTION_CANT_GO, value=run_id, confirm=confirm
    )
    return ActionsBlock(elements=[button], block_id=RUNNER_ACTIONS_BLOCK_ID).to_dict()


def reminder_dm(view: RunView) -> tuple[str, list[BlockDict]]:
    """The runner's reminder shortly before pickup, with the same order list:
    "⏰ Pickup 09:32, Lobby cafe: 8 orders"."""
    orders = _orders(total_items(view.orders))
    if view.pickup_time is not None:
        place = f", {escape(view.note)}" if view.note else ""
        text = f"⏰ Pickup {pickup_text(view.pickup_time)}{place}: {orders}"
    else:
        place = f" ({escape(view.note)})" if view.note else ""
        text = f"⏰ Coffee run reminder{place}: {orders}"
    return text, _with_order_list([section(f"*{text}*")], view.orders)


# --- the channel's last call ----------------------------------------------------------


def last_call_message(view: RunView, minutes: int) -> tuple[str, list[BlockDict]]:
    """The channel's last call before the run closes, with a link to the run message. It
    mentions nobody: those who ordered don't need a ping, and the rest can ignore it."""
    text = f"⏰ Last call: closes in about {minutes} min"
    count = plural(len(view.orders), "person", "people")
    where = link(view.message_permalink, "Order on the run message")
    body = f"*{text}* ({count} in so far). {where}."
    return text, [section(body)]
