"""What the simulated people saw, as text a person can read in a terminal.

Messages are rendered from their Block Kit blocks the way Slack shows them: section and
header text, context lines (prefixed "›"), buttons as [labels], an overflow menu as
[⋯ its options]; mentions, channel links and date tokens become names and times (with
their zone), and mrkdwn styling is applied, not shown: *bold* is bold on a terminal (plain
elsewhere), _italic_ italic, `code` and ~strike~ lose their marks. Ephemeral answers
(only one person sees them) are listed in time order together with what each person did,
so a transcript reads as the story of the run.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from simulator.people import Simulator
from testkit.fakes.slack_api import FakeSlack

type JsonDict = dict[str, Any]

_INDENT = "    "
# <@U123>, <@U123|name>, <#C123>, <#C123|name>, <!here>, <!date^…|fallback>
_SPECIAL = re.compile(r"<([@#!])([^>|]+)(?:\|([^>]*))?>")
_LINK = re.compile(r"<((?:https?|mailto):[^>|]+)(?:\|([^>]*))?>")
# Slack's date tokens, as strftime formats (rendered in the reader's own time zone, as
# Slack renders them in the viewer's; a time says which zone that is).
_DATE_TOKENS = {
    "{time}": "%H:%M %Z",
    "{time_secs}": "%H:%M:%S %Z",
    "{date_num}": "%Y-%m-%d",
    "{date_short}": "%b %d, %Y",
    "{date}": "%B %d, %Y",
    "{date_long}": "%A, %B %d, %Y",
    "{date_pretty}": "%B %d, %Y",
    "{date_short_pretty}": "%b %d, %Y",
    "{date_long_pretty}": "%A, %B %d, %Y",
}


def _plain(text_object: object) -> str:
    return str(text_object.get("text", "")) if isinstance(text_object, dict) else ""


def _date(ref: str, fallback: str | None) -> str:
    # ref: "date^1700000000^{time}" (an optional "^link" may follow)
    parts = ref.split("^")
    try:
        when = datetime.fromtimestamp(int(parts[1])).astimezone()
    except (IndexError, ValueError, OverflowError, OSError):
        return fallback or ref
    shown = parts[2] if len(parts) > 2 else "{date_num} {time}"
    for token, fmt in _DATE_TOKENS.items():
        shown = shown.replace(token, when.strftime(fmt))
    return shown


# mrkdwn styles: a marker pair around text that neither starts nor ends with a space and
# is not inside a word (Slack's own rule: "2*3*4" is not bold).
_STYLES = {
    "*": ("\033[1m", "\033[22m"),
    "_": ("\033[3m", "\033[23m"),
    "~": ("\033[9m", "\033[29m"),
    "`": ("", ""),
}
_STYLE = {
    mark: re.compile(
        rf"(?<![\w{re.escape(mark)}]){re.escape(mark)}(?=\S)([^{re.escape(mark)}\n]*?\S)"
        rf"{re.escape(mark)}(?![\w{re.escape(mark)}])"
    )
    for mark in _STYLES
}
# Whether styles become terminal escapes (a terminal) or are just dropped (a file, a log).
STYLED = sys.stdout.isatty()


def _styled(text: str, *, ansi: bool) -> str:
    for mark, (on, off) in _STYLES.items():
        shown = rf"{on}\1{off}" if ansi else r"\1"
        text = _STYLE[mark].sub(shown, text)
    return text


def render_text(text: str, fake: FakeSlack, *, ansi: bool | None = None) -> str:
    """mrkdwn as a reader sees it: names for mentions, times for date tokens, styles
    applied (terminal escapes when `ansi`, default: when stdout is a terminal), &amp; → &."""

    def special(match: re.Match[str]) -> str:
        sigil, ref, label = match.groups()
        if sigil == "@":
            user = fake.users.get(ref)
            return "@" + (str(user["name"]) if user else label or ref)
        if sigil == "#":
            channel = fake.channels.get(ref)
            return "#" + (channel.name if channel is not None else label or ref)
        if ref.startswith("date^"):
            return _date(ref, label)
        if ref in ("here", "channel", "everyone"):
            return "@" + ref
        return label or ref

    text = _SPECIAL.sub(special, text)
    text = _LINK.sub(lambda m: m.group(2) or m.group(1), text)
    # Before unescaping: an escaped "&lt;" typed by someone is text, never markup.
    text = _styled(text, ansi=STYLED if ansi is None else ansi)
    # Slack's three escapes, &amp; last so "&amp;lt;" stays "&lt;".
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _element_label(element: JsonDict, fake: FakeSlack) -> str:
    kind = element.get("type")
    if kind == "button":
        return f"[{_plain(element.get('text'))}]"
    if kind == "overflow":
        options = " · ".join(_plain(o.get("text")) for o in element.get("options") or [])
        return f"[⋯ {options}]"
    if kind == "image":
        return f"(image: {element.get('alt_text', '')})"
    if "text" in element and isinstance(element["text"], str):
        return render_text(element["text"], fake)  # a context element: mrkdwn/plain_text
    return f"[{kind}]"


def render_blocks(blocks: Iterable[JsonDict], fake: FakeSlack) -> list[str]:
    """One or more lines per block, in order."""
    lines: list[str] = []
    for block in blocks:
        kind = block.get("type")
        if kind == "header":
            lines.append(_plain(block.get("text")))
        elif kind == "section":
            if block.get("text"):
                lines.extend(render_text(_plain(block["text"]), fake).split("\n"))
            for field in block.get("fields") or []:
                lines.extend(render_text(_plain(field), fake).split("\n"))
            accessory = block.get("accessory")
            if isinstance(accessory, dict):
                lines.append(_element_label(accessory, fake))
        elif kind == "context":
            parts = [_element_label(e, fake) for e in block.get("elements") or []]
            lines.extend("› " + line for line in "  ".join(parts).split("\n"))
        elif kind == "actions":
            lines.append(" ".join(_element_label(e, fake) for e in block.get("elements") or []))
        elif kind == "divider":
            lines.append("───")
        elif kind == "input":
            element = block.get("element") or {}
            shown = element.get("initial_value") or "________"
            lines.append(f"{_plain(block.get('label'))}: {shown}")
        elif kind == "image":
            lines.append(f"(image: {block.get('alt_text', '')})")
        else:
            lines.append(f"({kind} block)")
    return lines


def render_message(message: JsonDict, fake: FakeSlack) -> list[str]:
    """A message's content: its blocks, or its text when it has none."""
    if message.get("blocks"):
        return render_blocks(message["blocks"], fake)
    if message.get("text"):
        return render_text(str(message["text"]), fake).split("\n")
    return ["(empty message)"]


def _clock(at: float, *, millis: bool = False) -> str:
    moment = datetime.fromtimestamp(at)
    return moment.strftime("%H:%M:%S.%f")[:-3] if millis else moment.strftime("%H:%M:%S")


def _heading(title: str) -> list[str]:
    return ["", f"══ {title} " + "═" * max(3, 86 - len(title)), ""]


def _posted(message: JsonDict, fake: FakeSlack) -> list[str]:
    updates = int(message.get("updates") or 0)
    edited = f"  (edited {updates}×)" if updates else ""
    author = "CoffeeBuddy"
    if message.get("user") != fake.bot_user_id and not message.get("bot_id"):
        author = str(fake.users.get(str(message.get("user")), {}).get("real_name") or author)
    head = f"{_clock(float(message['ts']))}  {author}{edited}"
    return [head, *(_INDENT + line if line else "" for line in render_message(message, fake))]


def render_channel(fake: FakeSlack, channel: str) -> list[str]:
    """Every message in `channel` as it is now (after the bot's updates), oldest first."""
    messages = fake.messages(channel)
    if not messages:
        return ["(no messages)"]
    lines: list[str] = []
    for message in messages:
        lines.extend(_posted(message, fake))
        lines.append("")
    return lines[:-1]


def _where(fake: FakeSlack, channel: str) -> str:
    known = fake.channels.get(channel)
    if known is not None and known.dm_user is not None:
        return f"@{fake.users.get(known.dm_user, {}).get('name', known.dm_user)}'s DM"
    return "#" + (known.name if known is not None else channel)


def _bot_posts(fake: FakeSlack) -> list[tuple[float, str, str]]:
    """CoffeeBuddy's posts and updates, by their notification text (the message's `text`)."""
    entries = []
    for call in fake.calls():
        if not call.ok or call.method not in ("chat.postMessage", "chat.update"):
            continue
        verb = "posts in" if call.method == "chat.postMessage" else "updates its message in"
        where = _where(fake, str(call.args.get("channel")))
        text = render_text(str(call.args.get("text") or ""), fake).split("\n")[0]
        entries.append((call.at, fake.bot_user_id, f"{verb} {where}: {text}"))
    return entries


def render_timeline(sim: Simulator) -> list[str]:
    """What each person did and what only they saw, in time order, with what CoffeeBuddy
    posted in between."""
    names = {u: "@" + sim.user_name(u) for u in sim.fake.users}
    names[sim.fake.bot_user_id] = "CoffeeBuddy"
    entries: list[tuple[float, str, str]] = [(e.at, e.user, e.text) for e in sim.events()]
    for told in sim.private_messages():
        label = "sees:" if told.via in ("form", "slack") else "← only they see:"
        entries.append((told.at, told.user, f"{label} {render_text(told.text, sim.fake)}"))
    if entries:  # a simulator that recorded nothing has no story to tell
        entries += _bot_posts(sim.fake)
    if not entries:
        return ["(nothing happened)"]
    width = max(len(names.get(user, user)) for _, user, _ in entries)
    lines = []
    for at, user, text in sorted(entries, key=lambda e: e[0]):
        prefix = f"{_clock(at, millis=True)}  {names.get(user, user):<{width}}  "
        first, *rest = text.split("\n")
        lines.append(prefix + first)
        lines.extend(" " * len(prefix) + line if line else "" for line in rest)
    return lines


def render_dms(fake: FakeSlack, users: Sequence[str]) -> list[str]:
    lines: list[str] = []
    for user in users:
        messages = fake.dms(user)
        if not messages:
            continue
        name = fake.users.get(user, {}).get("name", user)
        lines.append(f"— @{name}'s DM with CoffeeBuddy —")
        for message in messages:
            lines.extend(_posted(message, fake))
        lines.append("")
    return lines[:-1] if lines else ["(no direct messages)"]


def render_transcript(
    sim: Simulator, channels: Sequence[str], *, dm_users: Sequence[str] | None = None
) -> str:
    """The channels as everyone sees them, the timeline of actions and ephemeral answers,
    and the bot's DMs to `dm_users` (default: every user who has one)."""
    fake = sim.fake
    lines: list[str] = []
    for channel in channels:
        known = fake.channels.get(channel)
        name = known.name if known is not None else channel
        lines += _heading(f"#{name}: what everyone in the channel sees (messages as they are now)")
        lines += render_channel(fake, channel)
    lines += _heading("What happened: what people did, what only they saw, what the bot posted")
    lines += render_timeline(sim)
    users = list(dm_users) if dm_users is not None else sorted(fake.users)
    lines += _heading("Direct messages from CoffeeBuddy")
    lines += render_dms(fake, users)
    return "\n".join(lines).strip("\n") + "\n"
