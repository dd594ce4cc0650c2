from __future__ import annotations

from coffeebuddy.domain.models import OrderLine
from coffeebuddy.domain.summary import grouped_items, normalized_text, total_items


def _orders(*texts: str) -> list[OrderLine]:
    return [OrderLine(slack_user_id=f"U{i}", text=t) for i, t in enumerate(texts)]


def test_groups_case_and_whitespace_insensitively_with_first_spelling() -> None:
    orders = _orders("Flat White", "oat latte", "flat white", "  FLAT   white ")
    assert grouped_items(orders) == [("Flat White", 3), ("oat latte", 1)]


def test_sorted_by_count_then_first_appearance() -> None:
    orders = _orders("tea", "mocha", "espresso", "mocha", "espresso", "chai")
    # mocha and espresso tie at 2: mocha appeared first. tea and chai tie at 1: tea first.
    assert grouped_items(orders) == [("mocha", 2), ("espresso", 2), ("tea", 1), ("chai", 1)]


def test_display_spelling_has_whitespace_collapsed() -> None:
    assert grouped_items(_orders("  oat   flat white ")) == [("oat flat white", 1)]
    assert normalized_text(" a \t b ") == "a b"


def test_empty() -> None:
    assert grouped_items([]) == []
    assert total_items([]) == 0


def test_one_order_is_one_item_whatever_the_text_says() -> None:
    assert total_items(_orders("2 flat whites", "latte", "latte")) == 3
