"""Property tests for the `/coffee` parser beyond those in test_command.py: the edit form's
parsers (`parse_pickup`, `clean_note`), the hints every rejection gives, and the round
trips a person relies on (a time the app shows parses back to the same time; a note the
app stores is accepted unchanged when the edit form is saved as it was)."""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from coffeebuddy.domain.command import (
    MAX_RELATIVE_MINUTES,
    MIN_RELATIVE_MINUTES,
    USAGE_LINE,
    Admin,
    AtClock,
    Command,
    CommandError,
    ForgetMe,
    InMinutes,
    ShowHelp,
    ShowStats,
    StartRun,
    TimeSpec,
    clean_note,
    parse_command,
    parse_pickup,
    resolve_pickup,
)
from coffeebuddy.domain.models import MAX_NOTE_CHARS
from coffeebuddy.domain.text import strip_invisible

# Hypothesis' default per-example deadline makes results depend on machine speed.
no_deadline = settings(deadline=None)

# Characters the parser must treat as separators or drop: controls, line and paragraph
# separators, lone surrogates and the bidi overrides that could disguise a note.
# Zero-width and bidi controls are removed wherever they are (they are not separators).
_INVISIBLE = "\u200b\u200c\u200d\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_DROP_INVISIBLE = str.maketrans("", "", _INVISIBLE)
_NASTY = "\x00\x07\x1b\x7f\x85\t\n\r\x0b\x0c\u2028\u2029\u202a\u202e\u2066\u200f\ud800"
# Text with plenty of the characters that tend to break parsers: controls, surrogates,
# combining marks, wide and right-to-left scripts, Slack escapes, backticks.
_ANY_TEXT = st.lists(
    st.text(max_size=20)
    | st.text(alphabet=_NASTY, max_size=3)
    | st.sampled_from(["`", "&amp;", "&lt;", "<!here>", "@channel", "ß", "ſ", "\u0301", "٣"]),
    max_size=15,
).map("".join)
# Random text rarely looks like a time; these pieces make the grammar's corners likely.
_TIME_PIECES = st.sampled_from(
    [
        "in", "at", "an", "half", "one", "hour", "hours", "h", "hr", "m", "min", "mins",
        "minute", "minutes", "am", "pm", "a.m.", "P.M", "noon", "midday", "0", "00", "1",
        "9", "10", "12", "13", "23", "24", "59", "60", "99", "720", "721", "1h30",
        "10:30", "10.30", "3pm", "10:5", ":", ".", "`", "٣", "１０", "\u200e", "\n",
    ]
)  # fmt: skip
_TIMEISH = st.lists(_TIME_PIECES | st.text(max_size=3), max_size=6).flatmap(
    lambda parts: st.sampled_from(["", " ", "  "]).map(lambda sep: sep.join(parts))
)
# A plain note word: never a time, a subcommand or a mention, whatever follows it.
_NOT_NOTE_WORDS = frozenset(
    {"am", "pm", "noon", "midday", "help", "admin", "stats", "forget", "close", "cancel"}
    | {"status", "in", "at"}
)
_NOTE_WORD = st.from_regex(r"[A-Za-z][A-Za-z0-9',&;-]{0,11}", fullmatch=True).filter(
    lambda w: w.lower() not in _NOT_NOTE_WORDS
)
_NOTE = (
    st.lists(_NOTE_WORD | st.sampled_from(["☕", "<@U0ANA>", "2nd", "&amp;"]), min_size=1)
    .map(" ".join)
    .filter(lambda n: len(n) <= MAX_NOTE_CHARS)
)

_COMMAND_TYPES = (StartRun, ShowHelp, Admin, ShowStats, ForgetMe)


def _clock_forms(hour: int, minute: int) -> list[str]:
    """Every way the usage text promises to read the wall-clock time hour:minute."""
    h12, ampm = (hour % 12 or 12), ("am" if hour < 12 else "pm")
    forms = [
        f"{hour:02d}:{minute:02d}",
        f"{hour}:{minute:02d}",
        f"{hour}.{minute:02d}",
        f"at {hour:02d}:{minute:02d}",
        f"{h12}:{minute:02d}{ampm}",
        f"{h12}:{minute:02d} {ampm.upper()}",
        f"{h12}.{minute:02d} {ampm[0]}.m.",
        f"AT {h12}:{minute:02d}{ampm}",
    ]
    if minute == 0:
        forms += [f"{h12}{ampm}", f"{h12} {ampm}", f"at {h12}{ampm.upper()}"]
    if (hour, minute) == (12, 0):
        forms += ["noon", "midday", "at Noon"]
    return forms


def _relative_forms(minutes: int) -> list[str]:
    """Every way the usage text promises to read "`minutes` from now"."""
    hours, rest = divmod(minutes, 60)
    forms = [f"in {minutes}m", f"in {minutes} min", f"in {minutes} minutes", f"IN {minutes}M"]
    if hours:
        forms += [f"in {hours}h{rest:02d}", f"in {hours}h {rest}m", f"in {hours} hrs {rest} min"]
        if rest == 0:
            forms += [f"in {hours}h", f"in {hours} hours"]
    if minutes == 60:
        forms += ["in an hour", "in one hour"]
    if minutes == 30:
        forms += ["in half an hour"]
    return forms


# A time as a person might write it, valid or nearly so.
_WRITTEN_TIME = (
    st.tuples(st.integers(0, 23), st.integers(0, 59)).flatmap(
        lambda hm: st.sampled_from(_clock_forms(*hm))
    )
    | st.integers(MIN_RELATIVE_MINUTES, MAX_RELATIVE_MINUTES).flatmap(
        lambda m: st.sampled_from(_relative_forms(m))
    )
    | _TIMEISH
)


# Marks and overrides that change the direction text is shown in.
_BIDI = "\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"


def _is_separator_or_control(ch: str) -> bool:
    return unicodedata.category(ch) in {"Cc", "Cs", "Zl", "Zp"} or ch in _BIDI


def _check_error(exc: CommandError) -> None:
    """A rejection a person can act on: a short, clean problem, then the usage line."""
    assert exc.problem.strip(), "empty problem"
    assert exc.hint == f"{exc.problem}\n{USAGE_LINE}"
    assert str(exc) == exc.hint
    # Whatever was typed, the echo is clipped: the answer stays short...
    assert len(exc.problem) <= 200, exc.problem
    # ...and can't break out of its `code` formatting or smuggle control characters in.
    assert exc.problem.count("`") % 2 == 0, exc.problem
    assert not any(_is_separator_or_control(ch) for ch in exc.problem), exc.problem
    assert "Traceback" not in exc.problem


def _parse(text: str) -> Command | CommandError:
    try:
        return parse_command(text)
    except CommandError as exc:
        _check_error(exc)
        return exc


def _pickup(text: str) -> TimeSpec | CommandError | None:
    try:
        return parse_pickup(text)
    except CommandError as exc:
        _check_error(exc)
        return exc


def _note(text: str) -> str | CommandError | None:
    try:
        return clean_note(text)
    except CommandError as exc:
        _check_error(exc)
        return exc


def _check_note(note: str) -> None:
    assert 0 < len(note) <= MAX_NOTE_CHARS
    assert note == note.strip()
    assert "  " not in note
    assert not any(_is_separator_or_control(ch) for ch in note), repr(note)


# ---- any text: a command or a hint, never anything else ---------------------------------


@no_deadline
@given(_ANY_TEXT | _TIMEISH)
@example("10:30`" + "9" * 500)
@example("in " + "9" * 5000 + "m")
@example("\ud800 10:30 \udfff")
@example("admin " + "x" * 5000)
@example("`" * 300)
def test_command_errors_are_short_balanced_and_clean(text: str) -> None:
    result = _parse(text)
    if isinstance(result, StartRun) and result.note is not None:
        _check_note(result.note)
    elif not isinstance(result, CommandError):
        assert isinstance(result, _COMMAND_TYPES)


@no_deadline
@given(_ANY_TEXT | _TIMEISH)
@example("")
@example("10:30 Lobby")
@example("in 1h75")
@example("12am")
@example("at noon")
def test_pickup_field_gives_a_time_nothing_or_a_hint(text: str) -> None:
    result = _pickup(text)
    if result is None:
        # Empty (after dropping controls and spaces) means "no pickup time".
        assert not "".join(" " if _is_separator_or_control(c) else c for c in text).split()
    elif not isinstance(result, CommandError):
        assert isinstance(result, AtClock | InMinutes)


@no_deadline
@given(_ANY_TEXT | _TIMEISH | _NOTE)
@example("x" * MAX_NOTE_CHARS)
@example("x" * (MAX_NOTE_CHARS + 1))
@example("&amp;" * 25)
@example("Lobby <!here>")
@example("\u202eobbyL")
def test_note_field_gives_a_bounded_note_nothing_or_a_hint(text: str) -> None:
    result = _note(text)
    if isinstance(result, str):
        _check_note(result)
        assert clean_note(result) == result  # cleaning is idempotent
    elif isinstance(result, CommandError):
        assert "note" in result.problem.lower() or "mention" in result.problem.lower()


@no_deadline
@given(st.text(min_size=MAX_NOTE_CHARS + 1, max_size=2000))
@example("Lobby " * 40)
def test_long_notes_are_refused_with_their_length(text: str) -> None:
    # Invisible controls (zero-width, bidi) are dropped before the length is counted.
    visible = strip_invisible(text)
    cleaned = " ".join("".join(" " if _is_separator_or_control(c) else c for c in visible).split())
    assume(len(cleaned) > MAX_NOTE_CHARS)
    with pytest.raises(CommandError) as info:
        clean_note(text)
    problem = info.value.problem
    if problem.startswith("Mentions"):
        # The one refusal that comes before the length: a special mention in the text.
        assert re.search(r"here|channel|everyone|subteam\^", cleaned, re.IGNORECASE)
    else:
        assert problem == (
            f"The note is {len(cleaned)} characters long; please keep it to {MAX_NOTE_CHARS}."
        )


# ---- the command, the pickup field and the note field agree ------------------------------


@no_deadline
@given(_WRITTEN_TIME | _ANY_TEXT)
def test_a_pickup_field_time_means_the_same_in_the_command(text: str) -> None:
    spec = _pickup(text)
    assume(isinstance(spec, AtClock | InMinutes))
    assert isinstance(spec, AtClock | InMinutes)
    assert parse_command(text) == StartRun(time=spec, note=None)


@no_deadline
@given(_ANY_TEXT | _NOTE)
def test_a_command_note_is_accepted_unchanged_by_the_edit_form(text: str) -> None:
    # The edit form is pre-filled with the stored note; saving it unchanged must work.
    result = _parse(text)
    assume(isinstance(result, StartRun) and result.note is not None)
    assert isinstance(result, StartRun) and result.note is not None
    assert clean_note(result.note) == result.note


@no_deadline
@given(_ANY_TEXT | _NOTE)
def test_the_note_field_and_a_timeless_command_agree(text: str) -> None:
    # Whatever the edit form accepts as a note, `/coffee` stores the same (unless the
    # text starts with a time or a subcommand, which only the command reads).
    command = _parse(text)
    assume(isinstance(command, StartRun) and command.time is None)
    assert isinstance(command, StartRun)
    assert clean_note(text) == command.note


@no_deadline
@given(
    _WRITTEN_TIME,
    st.lists(
        st.sampled_from([*_NASTY.translate(_DROP_INVISIBLE), " ", "\t", "\u3000"]), min_size=1
    ),
)
def test_separators_and_controls_are_all_just_a_space(text: str, junk: list[str]) -> None:
    # Between words, any run of controls, separators or lone surrogates reads as one space.
    spaced = " " + "".join(junk).join(text.split(" "))
    plain = _parse(text)
    messy = _parse(spaced)
    if isinstance(plain, CommandError):
        assert isinstance(messy, CommandError)
        assert messy.problem == plain.problem
    else:
        assert messy == plain


@no_deadline
@given(_WRITTEN_TIME.filter(str.isascii))
def test_times_are_case_insensitive(text: str) -> None:
    lower, upper = _pickup(text.lower()), _pickup(text.upper())
    if isinstance(lower, CommandError):
        assert isinstance(upper, CommandError)
    else:
        assert upper == lower


# ---- round trips --------------------------------------------------------------------------


_CLOCK_CORNERS = st.sampled_from([(12, 0), (0, 0), (12, 30), (0, 30), (23, 59), (1, 0)])
_RELATIVE_CORNERS = st.sampled_from([30, 60, 1, 59, 61, 120, MAX_RELATIVE_MINUTES])


@no_deadline
@given(
    # The corners (noon, midnight, 12am/12pm) have forms of their own: draw them often.
    time=_CLOCK_CORNERS | st.tuples(st.integers(0, 23), st.integers(0, 59)),
    note=st.none() | _NOTE,
)
def test_any_clock_time_written_any_supported_way_parses_back(
    time: tuple[int, int], note: str | None
) -> None:
    for written in _clock_forms(*time):
        assert parse_pickup(written) == AtClock(*time), written
        text = written if note is None else f"{written} {note}"
        assert parse_command(text) == StartRun(AtClock(*time), note), text


@no_deadline
@given(
    minutes=_RELATIVE_CORNERS | st.integers(MIN_RELATIVE_MINUTES, MAX_RELATIVE_MINUTES),
    note=st.none() | _NOTE,
)
def test_any_relative_time_written_any_supported_way_parses_back(
    minutes: int, note: str | None
) -> None:
    for written in _relative_forms(minutes):
        assert parse_pickup(written) == InMinutes(minutes), written
        text = written if note is None else f"{written} {note}"
        assert parse_command(text) == StartRun(InMinutes(minutes), note), text


@no_deadline
@given(moment=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)))
def test_the_edit_forms_prefilled_time_parses_back(moment: datetime) -> None:
    # open_run_modal fills the field with the pickup as "%H:%M" in the user's zone.
    assert parse_pickup(moment.strftime("%H:%M")) == AtClock(moment.hour, moment.minute)


@no_deadline
@given(
    minutes=st.integers(MIN_RELATIVE_MINUTES, MAX_RELATIVE_MINUTES),
    now=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.timezones()
    ),
    tz=st.timezones(),
)
# Found by this test: `now + timedelta` on a zoned datetime adds wall-clock time, so across
# the fall-back hour "in 20m" from 01:50 EDT lands at 02:10 EST, 80 minutes later.
@example(minutes=20, now=datetime(2024, 11, 3, 1, 50, tzinfo=ZoneInfo("America/New_York")), tz=UTC)
def test_relative_pickup_is_exactly_that_much_later_in_any_zone(
    minutes: int, now: datetime, tz: ZoneInfo
) -> None:
    result = resolve_pickup(InMinutes(minutes), now, tz)
    assert result.tzinfo is UTC
    assert result - now == timedelta(minutes=minutes)


@no_deadline
@given(
    hour=st.integers(0, 23),
    minute=st.integers(0, 59),
    now=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.timezones()
    ),
    tz=st.timezones(),
)
def test_a_clock_time_in_the_past_says_which_and_what_time_it_is(
    hour: int, minute: int, now: datetime, tz: ZoneInfo
) -> None:
    error: CommandError | None = None
    try:
        resolve_pickup(AtClock(hour, minute), now, tz)
    except CommandError as exc:
        error = exc
    if error is None:
        return  # accepted: test_command.py checks what it resolves to
    _check_error(error)
    local = now.astimezone(tz)
    assert f"{hour:02d}:{minute:02d} has already passed today" in error.problem
    assert f"it's {local:%H:%M} now" in error.problem
    # Only times not later than now on the local clock are refused (the wall clock jumps
    # on a day the offset changes).
    assert (hour, minute) <= (local.hour, local.minute) or local.fold or _skipped(local)


def _skipped(local: datetime) -> bool:
    """True on a day with a clock change (the wall clock then isn't monotonic)."""
    start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    end = start + timedelta(days=1)
    return start.utcoffset() != end.utcoffset()


@no_deadline
@given(_ANY_TEXT, st.lists(st.tuples(st.integers(0, 400), st.sampled_from(list(_INVISIBLE)))))
def test_zero_width_and_bidi_controls_are_stripped_anywhere(
    text: str, inserts: list[tuple[int, str]]
) -> None:
    messy = text
    for position, ch in inserts:
        messy = messy[:position] + ch + messy[position:]
    got, want = _parse(messy), _parse(text.translate(_DROP_INVISIBLE))
    if isinstance(want, CommandError):
        assert isinstance(got, CommandError)
        assert got.problem == want.problem
    else:
        assert got == want
    try:
        note = clean_note(messy)
    except CommandError:
        return
    assert note is None or not set(note) & set(_INVISIBLE)
