"""Counting what the runner has to buy.

Pure functions over `OrderLine`s: no Slack formatting or escaping here, the block
builders do that when they render the result.
"""

from __future__ import annotations

from collections.abc import Sequence

from coffeebuddy.domain.models import OrderLine
from coffeebuddy.domain.text import strip_invisible


def normalized_text(text: str) -> str:
    """The order text as it is shown: surrounding and repeated whitespace collapsed.

    Modal input is a single line, but stray double spaces or a trailing space would
    otherwise make "flat white" and "flat  white " look like different drinks.
    """
    return " ".join(strip_invisible(text).split())


def _group_key(text: str) -> str:
    # casefold, not lower: "Straße" and "STRASSE" are the same word to a barista.
    return normalized_text(text).casefold()


def grouped_items(orders: Sequence[OrderLine]) -> list[tuple[str, int]]:
    """Identical drinks counted together, most ordered first.

    Drinks match case- and whitespace-insensitively and are shown with the spelling of
    the first order that named them. Ties keep the order in which drinks first appeared,
    so the list is stable as people join.
    """
    counts: dict[str, int] = {}
    display: dict[str, str] = {}
    for order in orders:
        key = _group_key(order.text)
        if key not in counts:
            # dicts keep insertion order, which is the first-appearance tie-break below.
            counts[key] = 0
            display[key] = normalized_text(order.text)
        counts[key] += 1
    # sorted() is stable, so equal counts stay in first-appearance order.
    ranked = sorted(counts.items(), key=lambda item: -item[1])
    return [(display[key], count) for key, count in ranked]


def total_items(orders: Sequence[OrderLine]) -> int:
    """How many drinks to carry: every order is one item, whatever its text says."""
    return len(orders)
