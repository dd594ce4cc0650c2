"""The Block Kit pieces every surface shares: escaped, verbatim mrkdwn text, sections,
context lines, plurals, mentions and pickup times. The `*_blocks` modules build whole
messages and views from these."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from slack_sdk.models.blocks import ContextBlock, MarkdownTextObject, SectionBlock

from coffeebuddy.domain.text import escape_mrkdwn

BlockDict = dict[str, Any]


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


def plural(count: int, singular: str, plural: str) -> str:
    return f"{count} {singular if count == 1 else plural}"


def mention(user_id: str) -> str:
    return f"<@{user_id}>"


def section(text: str, block_id: str | None = None) -> BlockDict:
    return SectionBlock(text=mrkdwn(text), block_id=block_id).to_dict()


def context(text: str, block_id: str | None = None) -> BlockDict:
    return ContextBlock(elements=[mrkdwn(text)], block_id=block_id).to_dict()
