"""Values in messages: short ones whole, long ones abbreviated with their size; messages bounded."""

from __future__ import annotations

from decimal import Decimal

import pytest

from webhook.engine.excerpt import MESSAGE_BYTES, bounded, excerpt, shown, utf8_size


def test_short_values_are_shown_whole():
    assert shown("1Gi") == "'1Gi'"
    assert shown(5) == "5"
    assert shown([1]) == "[1]"
    assert excerpt("main") == "main"


def test_long_strings_show_their_start_and_size():
    assert shown("0" * 3000 + "x") == repr("0" * 64) + "…(3001 bytes)"
    assert excerpt("é" * 100) == "é" * 64 + "…(200 bytes)"


@pytest.mark.parametrize(
    "value",
    [
        [[[[[[[[[[]]]]]]]]]] * 1000,
        {"k" * 10_000: "v" * 10_000},
        Decimal("1" * 5000),
        10**5000,  # repr() of it raises ValueError above 4300 digits
    ],
    ids=["wide list", "long keys", "long Decimal", "huge int"],
)
def test_other_values_are_shown_bounded(value):
    assert len(shown(value)) < 200


def test_a_deep_value_is_shown_without_recursing():
    deep: list[object] = []
    for _ in range(100_000):
        deep = [deep]
    assert len(shown(deep)) < 50


def test_messages_are_cut_to_about_a_kib():
    assert bounded("short") == "short"
    long = bounded("x" * 100_000)
    assert len(long.encode()) <= MESSAGE_BYTES and long.endswith("…(100000 bytes in all)")
    wide = bounded("€" * 10_000)
    assert len(wide.encode()) <= MESSAGE_BYTES and "30000 bytes" in wide


def test_sizes_are_utf8_and_accept_lone_surrogates():
    assert utf8_size("abc") == 3
    assert utf8_size("é") == 2
    assert utf8_size("\ud800") == 3
    assert "bytes" in bounded("\ud800" * 2000)


def test_messages_are_always_utf8():
    assert bounded("a\ud800b") == "a\\ud800b"
    assert bounded("é") == "é"
    assert bounded("\udfff" * 1000).encode()
