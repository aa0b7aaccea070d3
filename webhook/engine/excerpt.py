"""How user values appear in messages: short ones whole, long ones as their start and their size.

A pod reaches a mutating webhook before the API server validates it, so an annotation or a field may be
megabytes long or nested thousands deep. Every message that shows such a value goes through `shown`, and every
message a user or a log line receives through `bounded`, so no value is echoed whole and no message outgrows
about 1 KiB.
"""

from __future__ import annotations

import reprlib
from typing import Final

SHOWN_CHARS: Final = 64
MESSAGE_BYTES: Final = 1024

# Non-string values are shown with bounded depth and length; reprlib never recurses past `maxlevel`.
_REPR: Final = reprlib.Repr()
_REPR.maxlevel = 3
_REPR.maxstring = SHOWN_CHARS
_REPR.maxother = SHOWN_CHARS
_REPR.maxlong = SHOWN_CHARS
_INT_BITS_SHOWN: Final = 1024  # repr() of a larger int is slow (and above ~14,000 bits raises ValueError)


def utf8_size(text: str) -> int:
    """The UTF-8 size of `text`, without encoding it when every character is known to fit in one byte."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def excerpt(text: str, keep: int = SHOWN_CHARS) -> str:
    """`text` when short; else its first `keep` characters and its size: `000…(3001 bytes)`."""
    return text if len(text) <= keep else f"{text[:keep]}…({utf8_size(text)} bytes)"


def shown(value: object, keep: int = SHOWN_CHARS) -> str:
    """`repr(value)` when short; else the repr of its first `keep` characters and its size: `'000'…(3001 bytes)`."""
    if isinstance(value, str):
        if len(value) <= keep:
            return repr(value)
        return f"{value[:keep]!r}…({utf8_size(value)} bytes)"
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > _INT_BITS_SHOWN:
        return f"<an integer of {value.bit_length()} bits>"
    return _REPR.repr(value)


def bounded(message: str, limit: int = MESSAGE_BYTES) -> str:
    """`message` cut to at most about `limit` UTF-8 bytes, saying how long it was, and encodable as UTF-8.

    A lone surrogate (`"\\ud800"`, which JSON can carry but UTF-8 cannot) is written as its escape, so the
    message can always be serialized into a reply or a log line.
    """
    if not message.isascii():
        message = message.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(message) * 4 <= limit:
        return message
    size = utf8_size(message)
    if size <= limit:
        return message
    cut = message.encode("utf-8", "surrogatepass")[: limit - 32].decode("utf-8", "ignore")
    return f"{cut}…({size} bytes in all)"


# Suggestions: names within a small edit distance of what was written, so that every "did you mean" in our
# messages follows one rule (difflib's ratio finds `V100` close to `H10`, and nothing for a long list).
_MAX_EDITS: Final = 2
_MAX_SUGGESTIONS: Final = 3


def _edits(a: str, b: str, bound: int) -> int:
    """The optimal-string-alignment distance of `a` and `b` (insert, delete, substitute, swap two neighbours),
    case-insensitive; `bound + 1` as soon as it must exceed `bound`."""
    a, b = a.lower(), b.lower()
    if abs(len(a) - len(b)) > bound:
        return bound + 1
    before: list[int] | None = None
    row = list(range(len(b) + 1))
    for i, char in enumerate(a, 1):
        current = [i] + [0] * len(b)
        for j, other in enumerate(b, 1):
            cost = 0 if char == other else 1
            current[j] = min(row[j] + 1, current[j - 1] + 1, row[j - 1] + cost)
            if before is not None and i > 1 and j > 1 and char == b[j - 2] and a[i - 2] == other:
                current[j] = min(current[j], before[j - 2] + 1)
        if min(current) > bound:
            return bound + 1
        before, row = row, current
    return row[-1]


def suggestions(word: str, candidates: list[str] | tuple[str, ...], bound: int | None = None) -> list[str]:
    """At most three `candidates` within `bound` edits of `word` (case-insensitive; default 1 for words of up
    to 4 characters, else 2): the closest first, then those sharing the longest start with it."""
    if len(word) > SHOWN_CHARS:
        return []
    if bound is None:
        bound = 1 if len(word) <= 4 else _MAX_EDITS
    scored = []
    for index, name in enumerate(candidates):
        distance = _edits(word, name, bound)
        if distance <= bound:
            shared = next(
                (k for k, (x, y) in enumerate(zip(word.lower(), name.lower(), strict=False)) if x != y), len(name)
            )
            scored.append((distance, -shared, index, name))
    scored.sort()
    return [name for *_, name in scored[:_MAX_SUGGESTIONS]]


def did_you_mean(word: str, candidates: list[str] | tuple[str, ...]) -> str:
    """`"did you mean A, B? "`, or "" when nothing is close."""
    close = suggestions(word, candidates)
    return f"did you mean {', '.join(close)}? " if close else ""
