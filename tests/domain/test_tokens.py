"""The token estimate is an upper bound by its own rules, for any text."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asemantic.domain.tokens import approximate_tokens, estimate_tokens

NON_ASCII_SPACES = "\u00a0\u1680\u2000\u2007\u2009\u200a\u2028\u2029\u202f\u205f\u3000"


@pytest.mark.parametrize("space", list(NON_ASCII_SPACES))
def test_every_non_ascii_space_costs_at_least_one_token(space: str) -> None:
    assert estimate_tokens(space * 1000) >= 1000
    assert estimate_tokens(f"a{space}b") >= 3


@given(st.text(max_size=300))
@settings(max_examples=300, deadline=None)
def test_the_estimate_follows_its_own_rules(text: str) -> None:
    """Every non-ASCII character at least one token, every ASCII symbol one, and the
    closer count never above the estimate."""
    estimate = estimate_tokens(text)
    non_ascii = sum(1 for ch in text if not ch.isascii())
    symbols = sum(1 for ch in text if ch.isascii() and 0x21 <= ord(ch) <= 0x7E and not ch.isalnum())
    assert estimate >= non_ascii + symbols
    assert approximate_tokens(text) <= estimate


@given(st.text(alphabet=st.characters(categories=["Zs", "Zl", "Zp", "Cc"]), max_size=200))
@settings(max_examples=200, deadline=None)
def test_white_space_of_any_kind_is_bounded(text: str) -> None:
    non_ascii = sum(1 for ch in text if not ch.isascii())
    assert estimate_tokens(text) >= non_ascii
