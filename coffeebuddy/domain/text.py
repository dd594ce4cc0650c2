"""User text, cleaned once on the way in and escaped on the way out (pure functions).

On the way in (orders, notes, usuals): zero-width and bidi control characters are removed
(a right-to-left override reverses what follows it on screen, a zero-width space makes two
identical drinks look different), other controls become spaces and whitespace collapses.

On the way out (every mrkdwn text that repeats user text): Slack's own escaping of `&`, `<`
and `>`, so `<!channel>` or `<@U1>` typed by someone pings nobody, and plain-word
`@here`, `@channel` and `@everyone` lose their at-sign's power.
"""

from __future__ import annotations

import re
import unicodedata

# U+200B–U+200F (zero-width space/joiners, LRM/RLM), U+202A–U+202E (embeddings and
# overrides), U+2066–U+2069 (isolates); also U+2060 (word joiner) and U+FEFF (BOM), which
# hide the same way.
_INVISIBLE = re.compile("[\u200b-\u200f\u202a-\u202e\u2060\u2066-\u2069\ufeff]")
# An entity Slack already escaped; left alone so escaping twice does not show "&amp;amp;".
_ESCAPED_AMP = re.compile(r"&(?!(?:amp|lt|gt);)")
_BROADCAST = re.compile(r"@(here|channel|everyone)\b", re.IGNORECASE)
# A full-width commercial at: reads as "@here" to a person, is no keyword to Slack.
_HARMLESS_AT = "\uff20"


def strip_invisible(text: str) -> str:
    return _INVISIBLE.sub("", text)


def clean_user_text(text: str | None) -> str:
    """Text as it is stored: no invisible controls, other controls as spaces, single
    spaces, no surrounding whitespace."""
    visible = strip_invisible(text or "")
    spaced = "".join(" " if _is_control(ch) else ch for ch in visible)
    return " ".join(spaced.split())


def _is_control(ch: str) -> bool:
    # Cs: lone surrogates can't be stored or sent back to Slack as UTF-8.
    return unicodedata.category(ch) in {"Cc", "Cs", "Zl", "Zp"}


def escape_mrkdwn(text: str) -> str:
    """User text made safe inside mrkdwn (idempotent: an existing &amp;, &lt; or &gt; from
    a slash command, which Slack escapes itself, is kept as is)."""
    escaped = _ESCAPED_AMP.sub("&amp;", strip_invisible(text))
    escaped = escaped.replace("<", "&lt;").replace(">", "&gt;")
    return _BROADCAST.sub(lambda m: _HARMLESS_AT + m[1], escaped)


def quote_code(text: str, limit: int = 24) -> str:
    """User text echoed back in an error hint, inside backticks (which it can't close)."""
    clean = escape_mrkdwn(text).replace("`", "'")
    return f"`{clean if len(clean) <= limit else clean[: limit - 1] + '…'}`"
