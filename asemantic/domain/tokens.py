"""Token counts without a tokenizer.

Gemini's tokenizer is not available offline, so asemantic *estimates* token counts on
the safe side: :func:`estimate_tokens` is meant to be at least the real count for any
text (about 3 ASCII letters a token, every symbol a token, every non-ASCII character at
least one token), so a chunk the splitter accepts is never silently truncated by the
model. :func:`approximate_tokens` is a closer, smaller figure (about 4 letters a token)
used for cost accounting and by the emulator as its "true" count; it is never larger
than the estimate.

The rule, piece by piece (a piece is a maximal run of ASCII letters and digits, a
maximal run of ASCII white space, or one other character):

* a run of ``n`` ASCII letters/digits costs ``ceil(n / 3)``;
* a run of ``n`` ASCII white-space characters costs ``ceil(n / 4)``, except that a
  lone space (or tab, CR, VT, FF) costs nothing; a lone newline costs one;
* an ASCII symbol or control character costs one (VT and FF: one besides their share
  of a white-space run), DEL two;
* a non-ASCII character costs one below U+0800 (two UTF-8 bytes) and two from U+0800
  on (three or four bytes), white space included.

Decisions:

* :class:`TokenCounter` prices every span of one text with two ``bytes.count`` calls:
  the text is first turned into one byte per character (Latin-1, with every other
  character mapped to a stand-in of the same price) and each piece's tokens marked
  by a few whole-string ``translate``/``replace`` passes (C loops, no Python work per
  character). The splitters price thousands of spans of one document; the earlier
  regex walk cost about a microsecond per piece and was most of ingestion's time.
* A span that cuts a run (an ASCII word or white-space run going on past either end)
  is priced by its own counter, so every span's figure equals the rule applied to the
  span's text on its own. Tests hold :func:`estimate_tokens` to the rule above.
"""

from __future__ import annotations

import codecs

__all__ = ["TokenCounter", "approximate_tokens", "estimate_tokens"]

# One byte per character: Latin-1 as is; a stand-in for the rest with the same price:
# U+0100..U+07FF cost one (like U+0080..U+00FF), U+0800 on cost two (DEL's price).
_ERRORS = "asemantic.token-stand-in"
_COST_TWO = "\x7f"


def _stand_in(error: UnicodeError) -> tuple[str, int]:
    if not isinstance(error, UnicodeEncodeError):
        raise error
    run = error.object[error.start : error.end]
    return "".join([_COST_TWO if char >= "\u0800" else "\x80" for char in run]), error.end


codecs.register_error(_ERRORS, _stand_in)


def _table(classify: dict[int, bytes], default: bytes) -> bytes:
    return b"".join(classify.get(i, default) for i in range(256))


_ALNUM = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_SPACE = b" \t\r\x0b\x0c"
# Classes: a letter/digit, w white space, n newline, T one token, Q two tokens.
_CLASSES = _table(
    {i: b"a" for i in _ALNUM} | {i: b"w" for i in _SPACE} | {10: b"n", 0x7F: b"Q"}, b"T"
)
# Lone newlines ('n') and a run's last letters ('a') cost a token; newlines in a
# white-space run ('m') join it.
_RUNS = bytes.maketrans(b"nma", b"TwT")


class TokenCounter:
    """:func:`estimate_tokens` of any span of one text, each in about constant time.

    ``counter.span(start, end) == estimate_tokens(text[start:end])`` for every span.
    """

    __slots__ = ("_classes", "_extra", "_marks", "_raw", "_text", "_two")

    def __init__(self, text: str) -> None:
        self._text = text
        raw = text.encode("latin-1", _ERRORS)
        classes = raw.translate(_CLASSES)
        self._classes = classes
        # VT and FF are white space and a control character: one token besides.
        self._extra = b"\x0b" in raw or b"\x0c" in raw
        self._raw = raw
        marks = classes
        if b"a" in marks:
            # A token at each third letter/digit of a run, counted from its start (the
            # last one or two of a run: 'a', made a token below).
            marks = marks.replace(b"aaa", b"Tbb").replace(b"aa", b"Tb")
        if b"n" in marks:
            # Mark newlines with a white-space neighbour 'm' (two passes where pairs
            # overlap); the newlines left are lone ones.
            marks = marks.replace(b"nn", b"mm").replace(b"mn", b"mm")
            marks = marks.replace(b"wn", b"wm").replace(b"nw", b"mw")
        marks = marks.translate(_RUNS)
        if b"ww" in marks:
            # Runs of two or more: a token at each fourth character from the start.
            marks = marks.replace(b"wwww", b"Txxx").replace(b"www", b"Txx")
            marks = marks.replace(b"ww", b"Tx").replace(b"xw", b"xT")
        self._marks = marks
        self._two = b"Q" in marks

    def __len__(self) -> int:
        return len(self._text)

    def span(self, start: int, end: int) -> int:
        """The estimate of ``text[start:end]``."""
        if end <= start:
            return 0
        classes = self._classes
        # A cut inside a run (two letters/digits, or two white-space characters, on
        # either side of an end) prices the span on its own.
        if start:
            left, right = classes[start - 1], classes[start]
            if (left == right == _LETTER) or (left in _WHITE and right in _WHITE):
                return _estimate_alone(self._text[start:end])
        if end < len(classes):
            left, right = classes[end - 1], classes[end]
            if (left == right == _LETTER) or (left in _WHITE and right in _WHITE):
                return _estimate_alone(self._text[start:end])
        marks = self._marks
        total = marks.count(b"T", start, end)
        if self._two:
            total += 2 * marks.count(b"Q", start, end)
        if self._extra:
            raw = self._raw
            total += raw.count(b"\x0b", start, end) + raw.count(b"\x0c", start, end)
        return total


_LETTER = ord("a")
_WHITE = frozenset(b"wn")


def _estimate_alone(text: str) -> int:
    return TokenCounter(text).span(0, len(text)) if text else 0


def estimate_tokens(text: str) -> int:
    """A conservative (high) token count for ``text`` (see the module docstring)."""
    return _estimate_alone(text)


def approximate_tokens(text: str) -> int:
    """A closer token count (never above :func:`estimate_tokens`): letter and digit
    runs at four characters a token, every other character but white space one."""
    return _ApproximateCounter(text).total


class _ApproximateCounter:
    __slots__ = ("total",)

    def __init__(self, text: str) -> None:
        classes = text.encode("latin-1", _ERRORS).translate(_APPROX)
        total = classes.count(b"T")
        if b"a" in classes:
            marks = classes.replace(b"aaaa", b"Tbbb").replace(b"aaa", b"Tbb")
            marks = marks.replace(b"aa", b"Tb").replace(b"a", b"T")
            total = marks.count(b"T")
        self.total = total


# Approximate count: letters/digits 'a', white space nothing, every other character T.
_APPROX = _table({i: b"a" for i in _ALNUM} | {i: b"w" for i in b" \t\r\n\x0b\x0c"}, b"T")
