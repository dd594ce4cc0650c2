"""Reading `/coffee [pickup time] [location note]` and turning a pickup time into a moment.

Pure: the caller passes `now` and the time zone, so the same text always means the same
thing, in tests as in production. Every rejection is a `CommandError` whose `hint` is
ready to show the person who typed the command.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from coffeebuddy.domain.models import MAX_NOTE_CHARS
from coffeebuddy.domain.text import clean_user_text, quote_code
from coffeebuddy.errors import CoffeeBuddyError

MIN_RELATIVE_MINUTES = 1
MAX_RELATIVE_MINUTES = 12 * 60

USAGE_LINE = (
    "Usage: `/coffee [pickup time] [location note]`, e.g. `/coffee 10:30 Lobby` or "
    "`/coffee in 20m`. See `/coffee help` for more."
)

USAGE = "\n".join(
    [
        "*Start a coffee run:* `/coffee [pickup time] [location note]`",
        "• `/coffee` — start a run with no pickup time",
        "• `/coffee 10:30 Lobby` — pickup at 10:30 today "
        "(also `10:30am`, `3pm`, `15:00`, `10.30`, `noon`, `at 10:30`)",
        "• `/coffee in 20m Blue Bottle` — pickup 20 minutes from now "
        "(also `in 20 min`, `in 1h`, `in 1h30`, up to 12 hours)",
        "• `/coffee Lobby cafe` — a note without a pickup time",
        f"Clock times use your Slack time zone. Notes can be up to {MAX_NOTE_CHARS} characters.",
    ]
)


class CommandError(CoffeeBuddyError):
    """The command text can't be used; `hint` says why and how to write it instead."""

    def __init__(self, problem: str) -> None:
        # `problem` alone suits a form field's error; `hint` adds the usage for chat.
        self.problem = problem
        self.hint = f"{problem}\n{USAGE_LINE}"
        super().__init__(self.hint)


@dataclass(frozen=True)
class AtClock:
    """A wall-clock time today, in the time zone of whoever typed it."""

    hour: int
    minute: int

    def __post_init__(self) -> None:
        # The parser gives friendly errors before building one; this only catches bugs.
        if not (0 <= self.hour <= 23 and 0 <= self.minute <= 59):
            raise ValueError(f"not a clock time: {self.hour}:{self.minute}")


@dataclass(frozen=True)
class InMinutes:
    minutes: int

    def __post_init__(self) -> None:
        if not MIN_RELATIVE_MINUTES <= self.minutes <= MAX_RELATIVE_MINUTES:
            raise ValueError(f"relative time out of range: {self.minutes}")


TimeSpec = AtClock | InMinutes


@dataclass(frozen=True)
class StartRun:
    time: TimeSpec | None
    note: str | None


@dataclass(frozen=True)
class ShowHelp:
    pass


@dataclass(frozen=True)
class Admin:
    """`/coffee admin` (settings), `admin reset` or `admin audit`."""

    action: str = "settings"


@dataclass(frozen=True)
class ShowStats:
    pass


@dataclass(frozen=True)
class ForgetMe:
    pass


Command = StartRun | ShowHelp | Admin | ShowStats | ForgetMe

_ADMIN_ACTIONS = frozenset({"settings", "reset", "audit"})

_HELP_WORDS = frozenset({"help", "-h", "--help", "?"})
# Future subcommands: refusing them now keeps `/coffee stats` from starting a run with
# the note "stats" today and changing meaning when the subcommand ships.
_RESERVED_WORDS = frozenset({"close", "cancel", "status"})


# The text is normalised to single spaces before matching, so " " is the only separator.
_FLAGS = re.IGNORECASE | re.ASCII
_END = r"(?= |$)"
_MIN_UNIT = r"(?:m|mins?|minutes?)"
_HOUR_UNIT = r"(?:h|hrs?|hours?)"

_AT_PREFIX = re.compile(r"at ", _FLAGS)
# "in 20", "in 2 weeks" and "in 1.5h" are attempts at a relative time; "in 3rd floor" is a note.
_RELATIVE_START = re.compile(r"in [0-9]+(?:[ .,:hm]|$)", _FLAGS)
_RELATIVE = re.compile(
    rf"in (?:(?P<hours>[0-9]+) ?{_HOUR_UNIT}"
    rf"(?:(?P<hmin>[0-9]+){_MIN_UNIT}?| (?P<hmin_spaced>[0-9]+) ?{_MIN_UNIT})?"
    rf"|(?P<minutes>[0-9]+) ?{_MIN_UNIT}){_END}",
    _FLAGS,
)
_RELATIVE_WORDS = re.compile(rf"in (?:(?P<half>half an)|an|one) hour{_END}", _FLAGS)
_NOON = re.compile(rf"(?:noon|midday){_END}", _FLAGS)
_CLOCK = re.compile(
    rf"(?P<hour>[0-9]+)(?:[:.](?P<minute>[0-9]+))?(?: ?(?P<ampm>[ap])\.?m\.?)?{_END}", _FLAGS
)
# "20m" without "in" is almost certainly a relative time, not the start of a note.
_BARE_DURATION = re.compile(rf"[0-9]+ ?(?:{_MIN_UNIT}|{_HOUR_UNIT}[0-9]*){_END}", _FLAGS)
# Starts like a clock time but isn't one we read ("10:30:00", "10:30ish", "3pmish").
_CLOCKISH = re.compile(r"[0-9]+(?:[:.][0-9]|[ap]\.?m)", _FLAGS)

_MENTION = re.compile(
    r"<!(?:(?:here|channel|everyone)(?=[|>])|subteam\^)"
    r"|(?<![\w@])@(?:here|channel|everyone)\b",
    _FLAGS,
)


def parse_command(text: str) -> Command:
    """Read the text after `/coffee`; raises CommandError with a hint for the user."""
    s = _normalise(text)
    if not s:
        return StartRun(time=None, note=None)
    first = s.split(" ", 1)[0].lower()
    if first in _HELP_WORDS:
        return ShowHelp()
    words = s.lower().split(" ")
    if first == "admin":
        action = words[1] if len(words) > 1 else "settings"
        if len(words) > 2 or action not in _ADMIN_ACTIONS:
            raise CommandError(
                "Admin commands: `/coffee admin`, `/coffee admin audit`, `/coffee admin reset`."
            )
        return Admin(action)
    if first == "stats":
        if len(words) > 1:
            raise CommandError("`/coffee stats` takes nothing after it.")
        return ShowStats()
    if first == "forget":
        if words[1:] != ["me"]:
            raise CommandError("To delete your stored usual order, type `/coffee forget me`.")
        return ForgetMe()
    if first in _RESERVED_WORDS:
        raise CommandError(f"`/coffee {first}` isn't available yet.")
    spec, rest = _split_time(s)
    return StartRun(time=spec, note=_note(rest))


def parse_pickup(text: str) -> TimeSpec | None:
    """A pickup time on its own, as typed in the edit form; empty text means none."""
    s = _normalise(text)
    if not s:
        return None
    spec, rest = _split_time(s)
    if spec is None or rest:
        raise CommandError(
            f"{_quote(s)} isn't a pickup time. Write it like `10:30`, `3pm` or `in 20m`."
        )
    return spec


def clean_note(text: str) -> str | None:
    """A note as typed in the edit form, checked by the same rules as in `/coffee`."""
    return _note(_normalise(text))


def resolve_pickup(spec: TimeSpec, now: datetime, tz: ZoneInfo) -> datetime:
    """The pickup moment in UTC; a clock time must still be ahead of `now` today in `tz`."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    if isinstance(spec, InMinutes):
        # In UTC: "in 20m" across a DST change is 20 real minutes, not 20 wall-clock ones.
        return now.astimezone(UTC) + timedelta(minutes=spec.minutes)
    local_now = now.astimezone(tz)
    wall = local_now.replace(hour=spec.hour, minute=spec.minute, second=0, microsecond=0)
    # fold=0 first: for a repeated hour (DST ends) that is the earlier of the two moments,
    # and for a skipped hour (DST starts) it reads the time with the old offset, i.e. an
    # hour later on the new clock. Going through UTC turns either into a real instant.
    for fold in (0, 1):
        candidate = wall.replace(fold=fold).astimezone(UTC)
        if candidate > now:
            return candidate
    raise CommandError(
        f"{spec.hour:02d}:{spec.minute:02d} has already passed today "
        f"(it's {local_now:%H:%M} now). Pick a later time, or try `/coffee in 20m`."
    )


def _normalise(text: str) -> str:
    return clean_user_text(text)


def _split_time(s: str) -> tuple[TimeSpec | None, str]:
    at = _AT_PREFIX.match(s)
    if at is not None:
        found = _clock_at_start(s[at.end() :])
        # "at the lobby" is a note, not a malformed time.
        return found if found is not None else (None, s)
    found_relative = _relative_at_start(s)
    if found_relative is not None:
        return found_relative
    found = _clock_at_start(s)
    return found if found is not None else (None, s)


def _relative_at_start(s: str) -> tuple[TimeSpec, str] | None:
    words = _RELATIVE_WORDS.match(s)
    if words is not None:
        return InMinutes(30 if words["half"] else 60), _rest(s, words)
    if _RELATIVE_START.match(s) is None:
        # "in the kitchen" is a note.
        return None
    m = _RELATIVE.match(s)
    if m is None:
        raise CommandError(
            f"I couldn't read {_quote(_first_words(s, 2))} as a time. "
            "Try `in 20m`, `in 1h` or `in 1h30`."
        )
    written = _quote(m[0])
    if m["minutes"] is not None:
        minutes = _to_int(m["minutes"])
    else:
        extra = m["hmin"] if m["hmin"] is not None else m["hmin_spaced"]
        extra_minutes = _to_int(extra) if extra is not None else 0
        if extra_minutes > 59:
            raise CommandError(f"In {written}, the minutes after the hours go up to 59.")
        minutes = _to_int(m["hours"]) * 60 + extra_minutes
    if not MIN_RELATIVE_MINUTES <= minutes <= MAX_RELATIVE_MINUTES:
        raise CommandError(
            f"{written} is out of range: pick between 1 minute and "
            f"{MAX_RELATIVE_MINUTES // 60} hours from now."
        )
    return InMinutes(minutes), _rest(s, m)


def _clock_at_start(s: str) -> tuple[TimeSpec, str] | None:
    noon = _NOON.match(s)
    if noon is not None:
        return AtClock(12, 0), _rest(s, noon)
    duration = _BARE_DURATION.match(s)
    if duration is not None:
        raise CommandError(
            f"{_quote(duration[0])} looks like a duration: write `in {_clip(duration[0])}` "
            "for a time from now, or a clock time like `10:30`."
        )
    m = _CLOCK.match(s)
    if m is not None:
        return _clock(m), _rest(s, m)
    if _CLOCKISH.match(s) is not None:
        raise CommandError(
            f"I couldn't read {_quote(_first_words(s, 1))} as a time. "
            "Try `10:30`, `10:30am`, `3pm` or `15:00`."
        )
    return None


def _clock(m: re.Match[str]) -> AtClock:
    written = _quote(m[0])
    hour_s, minute_s, ampm = m["hour"], m["minute"], m["ampm"]
    if minute_s is None and ampm is None:
        example = hour_s if len(hour_s) <= 2 else "10"
        raise CommandError(
            f"Is {written} a pickup time? Write it like `{example}:00`, `{example}am` "
            f"or `in {example}m`."
        )
    if len(hour_s) > 2:
        raise CommandError(f"{written} isn't a time: the hour has at most two digits.")
    hour = int(hour_s)
    minute = 0
    if minute_s is not None:
        if len(minute_s) != 2:
            raise CommandError(f"{written} isn't a time: minutes need two digits, like `10:05`.")
        minute = int(minute_s)
        if minute > 59:
            raise CommandError(f"{written} isn't a time: minutes go from 00 to 59.")
    if ampm is not None:
        if not 1 <= hour <= 12:
            raise CommandError(f"{written} isn't a time: with am/pm the hour goes from 1 to 12.")
        hour = hour % 12 + (12 if ampm.lower() == "p" else 0)
    elif hour > 23:
        raise CommandError(f"{written} isn't a time: hours go from 0 to 23.")
    return AtClock(hour, minute)


def _note(rest: str) -> str | None:
    if not rest:
        return None
    if _MENTION.search(rest):
        raise CommandError("Mentions like @here aren't allowed in the note.")
    # Counted as Slack sent it (`&amp;` is five characters) because that is what is stored.
    if len(rest) > MAX_NOTE_CHARS:
        raise CommandError(
            f"The note is {len(rest)} characters long; please keep it to {MAX_NOTE_CHARS}."
        )
    return rest


def _rest(s: str, m: re.Match[str]) -> str:
    return s[m.end() :].strip()


def _first_words(s: str, n: int) -> str:
    return " ".join(s.split(" ")[:n])


def _to_int(digits: str) -> int:
    # int() refuses very long digit strings; anything this long is out of range anyway.
    return int(digits) if len(digits) <= 6 else 10**6


def _clip(text: str) -> str:
    # Echoed inside backticks: escaped, and a stray backtick would break the formatting.
    return quote_code(text)[1:-1]


def _quote(text: str) -> str:
    return quote_code(text)
