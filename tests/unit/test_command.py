from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coffeebuddy.domain.command import (
    USAGE,
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
    parse_command,
    resolve_pickup,
)
from coffeebuddy.domain.models import MAX_NOTE_CHARS
from coffeebuddy.errors import CoffeeBuddyError

NEW_YORK = ZoneInfo("America/New_York")
KOLKATA = ZoneInfo("Asia/Kolkata")
LOS_ANGELES = ZoneInfo("America/Los_Angeles")

# Hypothesis' default per-example deadline makes results depend on machine speed.
no_deadline = settings(deadline=None)


def _hint(text: str) -> str:
    with pytest.raises(CommandError) as info:
        parse_command(text)
    return info.value.hint


# ---- accepted forms ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("10:30", AtClock(10, 30)),
        ("10.30", AtClock(10, 30)),
        ("9:05", AtClock(9, 5)),
        ("09:05", AtClock(9, 5)),
        ("15:00", AtClock(15, 0)),
        ("0:00", AtClock(0, 0)),
        ("23:59", AtClock(23, 59)),
        ("10:30am", AtClock(10, 30)),
        ("10:30pm", AtClock(22, 30)),
        ("10:30 am", AtClock(10, 30)),
        ("10:30 PM", AtClock(22, 30)),
        ("10:30 a.m.", AtClock(10, 30)),
        ("10.30pm", AtClock(22, 30)),
        ("3pm", AtClock(15, 0)),
        ("3PM", AtClock(15, 0)),
        ("3 PM", AtClock(15, 0)),
        ("3 pm", AtClock(15, 0)),
        ("3am", AtClock(3, 0)),
        ("12am", AtClock(0, 0)),
        ("12:30am", AtClock(0, 30)),
        ("12pm", AtClock(12, 0)),
        ("12:15pm", AtClock(12, 15)),
        ("noon", AtClock(12, 0)),
        ("Noon", AtClock(12, 0)),
        ("midday", AtClock(12, 0)),
        ("at 10:30", AtClock(10, 30)),
        ("AT 3pm", AtClock(15, 0)),
        ("at noon", AtClock(12, 0)),
        ("in 20m", InMinutes(20)),
        ("in 20 m", InMinutes(20)),
        ("in 20min", InMinutes(20)),
        ("in 20 min", InMinutes(20)),
        ("in 20 mins", InMinutes(20)),
        ("in 20 minutes", InMinutes(20)),
        ("in 1 minute", InMinutes(1)),
        ("IN 20M", InMinutes(20)),
        ("in 1h", InMinutes(60)),
        ("in 1 h", InMinutes(60)),
        ("in 1 hr", InMinutes(60)),
        ("in 2 hrs", InMinutes(120)),
        ("in 1 hour", InMinutes(60)),
        ("in 2 hours", InMinutes(120)),
        ("in 1h30", InMinutes(90)),
        ("in 1h30m", InMinutes(90)),
        ("in 1h 30m", InMinutes(90)),
        ("in 1 hour 30 minutes", InMinutes(90)),
        ("in 12h", InMinutes(720)),
        ("in 720m", InMinutes(720)),
        ("in an hour", InMinutes(60)),
        ("in half an hour", InMinutes(30)),
    ],
)
def test_time_forms(text: str, spec: TimeSpec) -> None:
    assert parse_command(text) == StartRun(time=spec, note=None)
    assert parse_command(f"  {text}  Lobby  cafe ") == StartRun(time=spec, note="Lobby cafe")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", StartRun(None, None)),
        ("   \n\t ", StartRun(None, None)),
        ("Lobby cafe", StartRun(None, "Lobby cafe")),
        ("10:30\nLobby", StartRun(AtClock(10, 30), "Lobby")),
        # A word after the time that merely starts like "am" stays in the note.
        ("10:30 amsterdam cafe", StartRun(AtClock(10, 30), "amsterdam cafe")),
        # "at" / "in" without a time are just the start of a note.
        ("at the lobby", StartRun(None, "at the lobby")),
        ("at 3rd floor kitchen", StartRun(None, "at 3rd floor kitchen")),
        ("in the kitchen", StartRun(None, "in the kitchen")),
        ("in 3rd floor kitchen", StartRun(None, "in 3rd floor kitchen")),
        ("3rd floor kitchen", StartRun(None, "3rd floor kitchen")),
        ("221B Baker St", StartRun(None, "221B Baker St")),
        ("noonish", StartRun(None, "noonish")),
        # Subcommand words only count as the first word.
        ("10:30 close to the lobby", StartRun(AtClock(10, 30), "close to the lobby")),
        ("Lobby, status unknown", StartRun(None, "Lobby, status unknown")),
        ("10:30 help", StartRun(AtClock(10, 30), "help")),
    ],
)
def test_notes_and_splitting(text: str, expected: StartRun) -> None:
    assert parse_command(text) == expected


@pytest.mark.parametrize("text", ["help", "HELP", "Help", " help ", "-h", "--help", "?", "help me"])
def test_help(text: str) -> None:
    assert parse_command(text) == ShowHelp()


# ---- rejected forms ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("25:00", "0 to 23"),
        ("24:00", "0 to 23"),
        ("10:75", "00 to 59"),
        ("10:5", "two digits"),
        ("10:300", "two digits"),
        ("123:00", "two digits"),
        ("13pm", "1 to 12"),
        ("0am", "1 to 12"),
        ("00:30am", "1 to 12"),
        ("10:30:00", "couldn't read"),
        ("10:30ish Lobby", "couldn't read"),
        ("3pmish", "couldn't read"),
        ("10", "`10:00`"),
        ("10 Lobby", "`10am`"),
        ("1030", "pickup time"),
        ("3 pmish", "pickup time"),
        ("at 25:00", "0 to 23"),
        ("at 10", "pickup time"),
        ("in 0m", "out of range"),
        ("in 0h", "out of range"),
        ("in 721m", "out of range"),
        ("in 13h", "out of range"),
        ("in 5000m", "out of range"),
        ("in 99999999999999999999999999m", "out of range"),
        ("in 1h75", "up to 59"),
        ("in 20", "in 20m"),
        ("in 2 weeks", "couldn't read"),
        ("in 1.5h", "couldn't read"),
        ("20m Lobby", "in 20m"),
        ("20 minutes", "duration"),
        ("1h30", "duration"),
        ("at 1h", "duration"),
    ],
)
def test_invalid_times(text: str, says: str) -> None:
    hint = _hint(text)
    assert says in hint
    assert hint.endswith(USAGE_LINE)


@pytest.mark.parametrize("word", ["close", "cancel", "status"])
def test_reserved_words_are_not_notes(word: str) -> None:
    for text in (word, word.upper(), f"{word} the run", f"  {word.title()}  "):
        hint = _hint(text)
        assert f"`/coffee {word}` isn't available yet" in hint
        assert USAGE_LINE in hint


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("admin", Admin("settings")),
        ("  ADMIN  ", Admin("settings")),
        ("admin reset", Admin("reset")),
        ("admin Audit", Admin("audit")),
        ("stats", ShowStats()),
        ("forget me", ForgetMe()),
        ("Forget  ME", ForgetMe()),
    ],
)
def test_subcommands(text: str, expected: Command) -> None:
    assert parse_command(text) == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("admin delete", "Admin commands"),
        ("admin reset now", "Admin commands"),
        ("stats please", "takes nothing after it"),
        ("forget", "/coffee forget me"),
        ("forget everything", "/coffee forget me"),
    ],
)
def test_malformed_subcommands_get_a_hint(text: str, says: str) -> None:
    assert says in _hint(text)


def test_error_is_a_coffeebuddy_error_with_the_hint_as_message() -> None:
    with pytest.raises(CoffeeBuddyError) as info:
        parse_command("25:00")
    assert isinstance(info.value, CommandError)
    assert info.value.user_message == info.value.hint
    assert len(info.value.hint.splitlines()) == 2


def test_echoed_input_cannot_break_out_of_code_formatting() -> None:
    hint = _hint("10:30`*bold*`" + "9" * 100)
    first_line = hint.splitlines()[0]
    assert first_line.count("`") % 2 == 0
    assert len(first_line) < 200


# ---- notes ------------------------------------------------------------------------------


def test_note_length_limit() -> None:
    at_limit = "x" * MAX_NOTE_CHARS
    assert parse_command(at_limit) == StartRun(None, at_limit)
    assert parse_command(f"10:30 {at_limit}") == StartRun(AtClock(10, 30), at_limit)
    hint = _hint("x" * (MAX_NOTE_CHARS + 1))
    assert f"{MAX_NOTE_CHARS + 1} characters" in hint
    assert str(MAX_NOTE_CHARS) in hint


def test_note_keeps_slack_escapes_and_counts_them() -> None:
    assert parse_command("10:30 Tea &amp; cake &lt;3") == StartRun(
        AtClock(10, 30), "Tea &amp; cake &lt;3"
    )
    # 24 "&" become 120 stored characters, which is what the database limit sees.
    assert parse_command("&amp;" * 24).note == "&amp;" * 24  # type: ignore[union-attr]
    _hint("&amp;" * 25)


def test_note_control_characters_become_single_spaces() -> None:
    assert parse_command("Lobby\ncafe\r\n2nd\tfloor\x00x\u2028y") == StartRun(
        None, "Lobby cafe 2nd floor x y"
    )
    # Bidi and zero-width controls are removed, not spaced: they are invisible.
    assert parse_command("Lobby\u202ecafe") == StartRun(None, "Lobbycafe")
    assert parse_command("Lobby \u200bcafe\u2066") == StartRun(None, "Lobby cafe")
    assert parse_command("\x00\x07") == StartRun(None, None)


def test_note_keeps_user_mentions_and_emoji() -> None:
    assert parse_command("in 20m with <@U123|ana> :coffee: ☕") == StartRun(
        InMinutes(20), "with <@U123|ana> :coffee: ☕"
    )


@pytest.mark.parametrize(
    "text",
    [
        "10:30 <!here> coffee!",
        "<!channel>",
        "Lobby <!everyone>",
        "Lobby <!here|here>",
        "Lobby <!subteam^S123|@baristas>",
        "10:30 @here",
        "@channel lobby",
        "Lobby @Everyone",
    ],
)
def test_special_mentions_are_rejected(text: str) -> None:
    assert "mentions like @here aren't allowed in the note" in _hint(text).lower()


@pytest.mark.parametrize("text", ["Lobby &lt;!here&gt;", "mail ana@here.com", "<!date^1|x>"])
def test_harmless_lookalikes_are_fine(text: str) -> None:
    assert parse_command(text) == StartRun(None, text)


# ---- resolve_pickup ---------------------------------------------------------------------


def _local(
    tz: ZoneInfo,
    year: int,
    month: int,
    day: int,
    hour: int,
    minute: int,
    second: int = 0,
    *,
    fold: int = 0,
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=tz, fold=fold)


@pytest.mark.parametrize(
    ("spec", "now", "tz", "expected"),
    [
        # Plain clock time later today.
        (
            AtClock(10, 30),
            _local(NEW_YORK, 2024, 6, 3, 9, 0),
            NEW_YORK,
            datetime(2024, 6, 3, 14, 30, tzinfo=UTC),
        ),
        # +5:30 offset.
        (
            AtClock(10, 30),
            datetime(2024, 6, 3, 3, 0, tzinfo=UTC),
            KOLKATA,
            datetime(2024, 6, 3, 5, 0, tzinfo=UTC),
        ),
        # "Today" is the local date: already 6 June in Kolkata while it is 5 June in UTC.
        (
            AtClock(10, 0),
            datetime(2024, 6, 5, 23, 30, tzinfo=UTC),
            KOLKATA,
            datetime(2024, 6, 6, 4, 30, tzinfo=UTC),
        ),
        # ...and still 1 June in Los Angeles while it is 2 June in UTC.
        (
            AtClock(21, 0),
            datetime(2024, 6, 2, 3, 0, tzinfo=UTC),
            LOS_ANGELES,
            datetime(2024, 6, 2, 4, 0, tzinfo=UTC),
        ),
        (
            AtClock(10, 31),
            _local(NEW_YORK, 2024, 6, 3, 10, 30),
            NEW_YORK,
            datetime(2024, 6, 3, 14, 31, tzinfo=UTC),
        ),
        # `now` in another zone than `tz` is fine.
        (
            AtClock(12, 0),
            _local(KOLKATA, 2024, 6, 3, 20, 0),
            NEW_YORK,
            datetime(2024, 6, 3, 16, 0, tzinfo=UTC),
        ),
        (
            InMinutes(20),
            _local(KOLKATA, 2024, 6, 3, 23, 50),
            KOLKATA,
            datetime(2024, 6, 3, 18, 40, tzinfo=UTC),
        ),
        (
            InMinutes(720),
            datetime(2024, 6, 3, 12, 0, tzinfo=UTC),
            NEW_YORK,
            datetime(2024, 6, 4, 0, 0, tzinfo=UTC),
        ),
    ],
)
def test_resolve_pickup(spec: TimeSpec, now: datetime, tz: ZoneInfo, expected: datetime) -> None:
    result = resolve_pickup(spec, now, tz)
    assert result == expected
    assert result.tzinfo is UTC


# New York, 10 March 2024: clocks jump from 02:00 EST to 03:00 EDT.
SPRING_01_00 = datetime(2024, 3, 10, 6, 0, tzinfo=UTC)  # 01:00 EST
# New York, 3 November 2024: clocks fall back from 02:00 EDT to 01:00 EST.
FALL_00_30 = datetime(2024, 11, 3, 4, 30, tzinfo=UTC)  # 00:30 EDT
FALL_FIRST_01_45 = datetime(2024, 11, 3, 5, 45, tzinfo=UTC)  # 01:45 EDT, before the repeat


@pytest.mark.parametrize(
    ("spec", "now", "expected"),
    [
        # 02:30 does not exist; read with the pre-jump offset it is 03:30 EDT.
        (AtClock(2, 30), SPRING_01_00, datetime(2024, 3, 10, 7, 30, tzinfo=UTC)),
        (AtClock(3, 0), SPRING_01_00, datetime(2024, 3, 10, 7, 0, tzinfo=UTC)),
        (AtClock(1, 30), SPRING_01_00, datetime(2024, 3, 10, 6, 30, tzinfo=UTC)),
        (AtClock(12, 0), SPRING_01_00, datetime(2024, 3, 10, 16, 0, tzinfo=UTC)),
        # The day has only 23 hours: 12 hours from 01:00 EST is 14:00 EDT.
        (InMinutes(720), SPRING_01_00, datetime(2024, 3, 10, 18, 0, tzinfo=UTC)),
        # 01:30 happens twice; the first one (EDT) when it is still ahead...
        (AtClock(1, 30), FALL_00_30, datetime(2024, 11, 3, 5, 30, tzinfo=UTC)),
        # ...and the repeat (EST) once the first has passed.
        (AtClock(1, 30), FALL_FIRST_01_45, datetime(2024, 11, 3, 6, 30, tzinfo=UTC)),
        (AtClock(12, 0), FALL_00_30, datetime(2024, 11, 3, 17, 0, tzinfo=UTC)),
    ],
)
def test_resolve_pickup_across_dst(spec: TimeSpec, now: datetime, expected: datetime) -> None:
    assert resolve_pickup(spec, now, NEW_YORK) == expected


@pytest.mark.parametrize(
    ("spec", "now", "tz"),
    [
        (AtClock(10, 30), _local(NEW_YORK, 2024, 6, 3, 10, 30), NEW_YORK),  # not strictly after
        (AtClock(9, 0), _local(NEW_YORK, 2024, 6, 3, 10, 30), NEW_YORK),
        (AtClock(0, 0), _local(KOLKATA, 2024, 6, 3, 0, 0, 1), KOLKATA),
        # 09:00 UTC is already 14:30 in Kolkata.
        (AtClock(14, 0), datetime(2024, 6, 3, 9, 0, tzinfo=UTC), KOLKATA),
        # Both 01:30s of the fall-back night are behind 01:45 EST.
        (AtClock(1, 30), _local(NEW_YORK, 2024, 11, 3, 1, 45, fold=1), NEW_YORK),
    ],
)
def test_past_clock_time_is_rejected(spec: AtClock, now: datetime, tz: ZoneInfo) -> None:
    with pytest.raises(CommandError) as info:
        resolve_pickup(spec, now, tz)
    hint = info.value.hint
    assert f"{spec.hour:02d}:{spec.minute:02d} has already passed today" in hint
    assert "in 20m" in hint
    assert f"it's {now.astimezone(tz):%H:%M} now" in hint


def test_past_hint_shows_local_time() -> None:
    with pytest.raises(CommandError, match=r"it's 14:30 now"):
        resolve_pickup(AtClock(14, 0), datetime(2024, 6, 3, 9, 0, tzinfo=UTC), KOLKATA)


def test_naive_now_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="aware"):
        resolve_pickup(InMinutes(5), datetime(2024, 6, 3, 9, 0), NEW_YORK)


@pytest.mark.parametrize(
    "build",
    [
        lambda: AtClock(24, 0),
        lambda: AtClock(-1, 0),
        lambda: AtClock(10, 60),
        lambda: InMinutes(0),
        lambda: InMinutes(721),
    ],
)
def test_out_of_range_specs_cannot_be_built(build: object) -> None:
    with pytest.raises(ValueError, match=r"range|clock"):
        build()  # type: ignore[operator]


def test_usage_mentions_every_form() -> None:
    for example in ("/coffee 10:30 Lobby", "3pm", "noon", "in 20m", "in 1h30"):
        assert example in USAGE
    assert str(MAX_NOTE_CHARS) in USAGE


# ---- properties -------------------------------------------------------------------------


def _check_parse(text: str) -> None:
    hint: str | None = None
    try:
        result: Command = parse_command(text)
    except CommandError as exc:
        hint = exc.hint
    if hint is not None:
        assert hint.strip()
        return
    assert isinstance(result, StartRun | ShowHelp | Admin | ShowStats | ForgetMe)
    if isinstance(result, StartRun) and result.note is not None:
        assert 0 < len(result.note) <= MAX_NOTE_CHARS
        assert result.note == result.note.strip()
        assert "\n" not in result.note


@no_deadline
@given(st.text())
def test_any_text_parses_or_gives_a_hint(text: str) -> None:
    _check_parse(text)


# Random text rarely looks like a time; build inputs from the pieces the grammar uses.
_PIECES = st.sampled_from(
    [
        "in",
        "at",
        "10",
        "10:30",
        "3",
        "pm",
        "am",
        "a.m.",
        "h",
        "m",
        "min",
        "hour",
        "30",
        "0",
        "noon",
        "help",
        "stats",
        ":",
        ".",
        "1h30",
        "99999999999",
        "<!here>",
        "&amp;",
        "\n",
        " ",
    ]
)
_GRAMMARISH = st.lists(_PIECES | st.text(max_size=4), max_size=8).flatmap(
    lambda parts: st.sampled_from(["", " "]).map(lambda sep: sep.join(parts))
)


@no_deadline
@given(_GRAMMARISH)
def test_grammar_like_text_parses_or_gives_a_hint(text: str) -> None:
    _check_parse(text)


@no_deadline
@given(
    hour=st.integers(0, 23),
    minute=st.integers(0, 59),
    now=st.datetimes(
        min_value=datetime(2000, 1, 1),
        max_value=datetime(2100, 1, 1),
        timezones=st.timezones(),
    ),
    tz=st.timezones(),
)
def test_clock_pickup_is_later_today_or_rejected(
    hour: int, minute: int, now: datetime, tz: ZoneInfo
) -> None:
    try:
        result = resolve_pickup(AtClock(hour, minute), now, tz)
    except CommandError:
        return
    assert result.tzinfo is UTC
    assert result > now
    # Same local day, give or take a skipped hour at midnight.
    assert result - now < timedelta(hours=25)
    wall = now.astimezone(tz).replace(hour=hour, minute=minute, second=0, microsecond=0)
    exists = wall.astimezone(UTC).astimezone(tz).replace(tzinfo=None) == wall.replace(tzinfo=None)
    if exists:
        local = result.astimezone(tz)
        assert (local.hour, local.minute) == (hour, minute)
