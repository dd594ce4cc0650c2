"""Every job kind is declared once, in `coffeebuddy.jobs.kinds`, under the name services
enqueue it by (`coffeebuddy.store.queue`)."""

from __future__ import annotations

from coffeebuddy.jobs.kinds import KINDS
from coffeebuddy.store import queue


def _queue_kind_names() -> set[str]:
    # The queue module's string constants are the kind names (statuses are a tuple).
    return {v for k, v in vars(queue).items() if k.isupper() and isinstance(v, str)}


def test_every_kind_name_has_one_declaration_and_nothing_else_does() -> None:
    assert set(KINDS) == _queue_kind_names()
    for name, kind in KINDS.items():
        assert kind.name == name
        assert callable(kind.handler)
        assert kind.attempts >= 1


def test_only_the_run_message_kinds_have_a_hook_for_when_they_die() -> None:
    hooked = {name for name, kind in KINDS.items() if kind.on_dead is not None}
    assert hooked == {queue.POST_RUN_MESSAGE, queue.POST_SUMMARY, queue.DM_RUNNER}
