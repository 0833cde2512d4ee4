"""Coupon codes: one per message, keyed, checked, read back however people type them."""

from __future__ import annotations

import random
import re

import pytest

from outreach.outcomes.coupons import (
    ALPHABET,
    coupon_code,
    display,
    is_consistent,
    near_misses,
    read_code,
)


def code(**kw: str | int) -> str:
    args: dict[str, str | int] = {
        "secret": "s3cret",
        "contact_id": "c001",
        "campaign": "birthday",
        "occurrence_key": "birthday:2026",
        "prefix": "CL",
        "length": 8,
    }
    return coupon_code(**(args | kw))  # type: ignore[arg-type]


def test_a_code_is_grouped_after_its_prefix_and_the_same_every_time() -> None:
    first = code()
    assert re.fullmatch(r"CL-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}", first)
    assert first == code()
    assert code(prefix="CL-") == first  # a trailing dash in the prefix is not doubled
    assert re.fullmatch(r"[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}", code(prefix="", length=12))


def test_each_message_has_its_own_code_and_another_secret_gives_other_codes() -> None:
    first = code()
    assert code(contact_id="c002") != first
    assert code(campaign="promotion") != first
    assert code(occurrence_key="birthday:2027") != first
    assert code(secret="other") != first


def test_codes_use_crockford_base32_evenly() -> None:
    codes = [code(contact_id=f"c{n}", length=12).replace("-", "")[2:] for n in range(400)]
    used = set("".join(codes))
    assert used == set(ALPHABET)
    assert not used & set("ILOU")
    assert len(set(codes)) == 400


def _symbols(n: int) -> list[str]:
    return [
        code(contact_id=f"c{i:05d}", occurrence_key=f"k{i % 7}", prefix="").replace("-", "")
        for i in range(n)
    ]


def test_every_single_substitution_and_neighbour_swap_of_1000_codes_is_refused() -> None:
    checked = 0
    for symbols in _symbols(1000):
        assert read_code(symbols, prefix="", length=8).symbols == symbols
        for place, was in enumerate(symbols):
            for symbol in ALPHABET:
                if symbol != was:
                    wrong = symbols[:place] + symbol + symbols[place + 1 :]
                    assert not is_consistent(wrong), (symbols, wrong)
                    checked += 1
            if place + 1 < len(symbols) and symbols[place] != symbols[place + 1]:
                swapped = symbols[:place] + symbols[place + 1] + was + symbols[place + 2 :]
                assert read_code(swapped, prefix="", length=8).symbols is None, (symbols, swapped)
                checked += 1
    assert checked > 1000 * 8 * 31


def test_a_wrong_symbol_is_refused_through_the_reader_too() -> None:
    rng = random.Random(7)
    for symbols in _symbols(200):
        place = rng.randrange(8)
        other = rng.choice([s for s in ALPHABET if s != symbols[place]])
        typed = display(symbols[:place] + other + symbols[place + 1 :], prefix="CL")
        reading = read_code(typed, prefix="CL", length=8)
        assert reading.symbols is None
        assert reading.problem is not None and "check character" in reading.problem


@pytest.mark.parametrize(
    "typed",
    ["cl-{a}-{b}", " CL {a} {b} ", "CL{a}{b}", "{a}{b}", "c-l{a}-{b}", "CL--{a}--{b}", "{a}-{b}"],
)
def test_case_spaces_and_dashes_are_normalised(typed: str) -> None:
    printed = code()
    a, b = printed.split("-")[1:]
    text = typed.format(a=a, b=b)
    if text[0].islower():
        text = text.lower()
    assert read_code(text, prefix="CL", length=8).symbols == a + b


def test_look_alikes_are_read_as_the_digits_they_look_like() -> None:
    symbols = next(s for s in _symbols(200) if "0" in s and "1" in s)
    typed = symbols.replace("0", "O").replace("1", "l")
    assert read_code(typed, prefix="CL", length=8).symbols == symbols


def test_a_symbol_no_code_uses_is_named_by_its_place() -> None:
    reading = read_code("CL-7KQ2-*9XD", prefix="CL", length=8)
    assert reading.symbols is None and reading.position == 5
    reading = read_code("CL-7KQ2-M9X", prefix="CL", length=8)
    assert reading.problem is not None and "8 characters" in reading.problem


def test_a_slip_is_one_of_its_near_misses() -> None:
    symbols = _symbols(1)[0]
    wrong = symbols[:3] + ("Z" if symbols[3] != "Z" else "Y") + symbols[4:]
    assert symbols in near_misses(wrong)
    assert all(is_consistent(candidate) for candidate in near_misses(wrong))
