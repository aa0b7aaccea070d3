"""Kubernetes resource quantities, after apimachinery's ``resource.Quantity`` (``pkg/api/resource``).

A quantity is ``<sign><number><suffix>``; the suffix is binary (``Ki Mi Gi Ti Pi Ei``), decimal
(``n u m "" k M G T P E``) or a decimal exponent (``e3``, ``E-2``). Parsing is exact (``decimal.Decimal``),
except that, like apimachinery, a non-zero value finer than ``1n`` is rounded away from zero to the nano and a
binary quantity is capped at 2^63-1 bytes.

``canonical_quantity`` is ``Quantity.String()`` of the parsed value: it keeps the suffix family of the input
and picks the largest unit with an integer mantissa (``0.5`` -> ``500m``, ``1.5Gi`` -> ``1536Mi``,
``2000`` -> ``2k``, ``1e3`` -> ``1e3``). It also reproduces apimachinery's "already canonical" shortcut, which
returns some inputs verbatim (``+1``, ``001``, ``1.500``, ``1E3``): that is what the API server and Flyte's Go
code emit for them. Compare quantities with ``quantity_equal``/``quantity_compare``, never by their strings.

Deliberate differences from apimachinery (all stricter): negative values are rejected unless
``allow_negative=True``; strings longer than 64 characters are rejected before they are looked at (leading
zeros count: ``000…01`` is as long as it looks), and so are ints and Decimals of more than 64 digits;
exponents beyond 1,000,000 in magnitude are rejected; ``bool``, NaN and infinities are rejected. Surrounding
whitespace is rejected (``ParseQuantity`` does not trim either). A DecimalSI value of 10^21 or more is written
with an ``e`` exponent, as apimachinery >= 0.35 does (older versions dropped the exponent).
"""

from __future__ import annotations

import enum
import functools
import math
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Final, TypeAlias

from webhook.engine.errors import Refusal
from webhook.engine.excerpt import shown

__all__ = [
    "GO_ERR_FORMAT_WRONG",
    "GO_ERR_NUMERIC",
    "GO_ERR_SUFFIX",
    "MAX_QUANTITY_LENGTH",
    "InvalidQuantity",
    "Quantity",
    "QuantityFormat",
    "QuantityInput",
    "canonical_quantity",
    "is_zero",
    "parse_quantity",
    "quantity_compare",
    "quantity_equal",
    "quantity_less",
    "scaled_value",
]

QuantityInput: TypeAlias = str | int | float | Decimal

#: apimachinery's error texts (``ErrFormatWrong``, ``ErrNumeric``, ``ErrSuffix``), used by Flyte's messages.
GO_ERR_FORMAT_WRONG: Final = (
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
)
GO_ERR_NUMERIC: Final = "unable to parse numeric part of quantity"
GO_ERR_SUFFIX: Final = "unable to parse quantity's suffix"

# apimachinery's own canonical forms are at most ~30 characters; 64 leaves room for any spelling a person writes.
MAX_QUANTITY_LENGTH: Final = 64
_MAX_INT_BITS: Final = 213  # 10^64 < 2^213: a larger int has more than 64 digits
_MAX_EXPONENT: Final = 1_000_000
_BINARY_CAP: Final = 2**63 - 1
_NANO: Final = -9

_DECIMAL_SUFFIXES: Final[dict[str, int]] = {
    "n": -9,
    "u": -6,
    "m": -3,
    "": 0,
    "k": 3,
    "M": 6,
    "G": 9,
    "T": 12,
    "P": 15,
    "E": 18,
}
_DECIMAL_SUFFIX_OF: Final[dict[int, str]] = {exp: suffix for suffix, exp in _DECIMAL_SUFFIXES.items()}
_BINARY_SUFFIXES: Final[dict[str, int]] = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_BINARY_SUFFIX_OF: Final[tuple[str, ...]] = ("", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei")

_DIGITS: Final = frozenset("0123456789")
_SIGNS: Final = frozenset("+-")
_SUFFIX_LETTERS: Final = frozenset("eEinumkKMGTP")
_SUFFIX_HELP: Final = "suffix must be one of n, u, m, k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei or e<exponent>"


class QuantityFormat(enum.StrEnum):
    """The suffix family a quantity was written in; ``canonical_quantity`` keeps it."""

    DECIMAL_SI = "DecimalSI"
    BINARY_SI = "BinarySI"
    DECIMAL_EXPONENT = "DecimalExponent"


class InvalidQuantity(Refusal):
    """A value that is not a (non-negative) Kubernetes quantity.

    ``str(exc)`` is ``"<value!r> is not a valid Kubernetes quantity: <reason>"``; callers prefix the field
    name. ``go_error`` is what apimachinery's ``ParseQuantity`` would say, or None when apimachinery would
    accept the value (negative numbers) or never sees it (bool, float NaN).
    """

    def __init__(self, value: object, reason: str, *, go_error: str | None = GO_ERR_FORMAT_WRONG) -> None:
        self.value = value
        self.reason = reason
        self.go_error = go_error
        super().__init__(f"{shown(value)} is not a valid Kubernetes quantity: {reason}")


@dataclass(frozen=True, slots=True)
class Quantity:
    """A parsed quantity: exact value, suffix family, and the string apimachinery keeps verbatim (if any)."""

    value: Decimal
    format: QuantityFormat
    verbatim: str | None = None

    @classmethod
    def parse(cls, value: QuantityInput, *, allow_negative: bool = False) -> Quantity:
        """Parse a str (apimachinery grammar), int, float (via ``repr``, like flytekit) or Decimal."""
        quantity = _parse_any(value)
        if quantity.value < 0 and not allow_negative:
            raise InvalidQuantity(value, "resource quantities must not be negative", go_error=None)
        return quantity

    def __str__(self) -> str:
        return self.verbatim if self.verbatim is not None else _canonicalize(self.value, self.format)


def parse_quantity(value: QuantityInput, *, allow_negative: bool = False) -> Decimal:
    """The exact value of a quantity: ``parse_quantity("1.5Ki") == Decimal(1536)``.

    Raises ``InvalidQuantity`` (a ``ValueError``) for anything Kubernetes would reject, for ``bool`` and for
    negative values unless ``allow_negative``.
    """
    if type(value) is str:  # the hot path of admission: a cached parse, no dispatch
        amount = _parse_text(value).value
        if amount < 0 and not allow_negative:
            raise InvalidQuantity(value, "resource quantities must not be negative", go_error=None)
        return amount
    return Quantity.parse(value, allow_negative=allow_negative).value


def canonical_quantity(value: QuantityInput, *, allow_negative: bool = False) -> str:
    """apimachinery's ``Quantity.String()`` of the parsed value: ``"0.5"`` -> ``"500m"``."""
    return str(Quantity.parse(value, allow_negative=allow_negative))


def quantity_compare(a: QuantityInput, b: QuantityInput) -> int:
    """-1, 0 or 1 as ``a`` is less than, equal to or greater than ``b`` (negative values allowed)."""
    left = parse_quantity(a, allow_negative=True)
    right = parse_quantity(b, allow_negative=True)
    return (left > right) - (left < right)


def quantity_equal(a: QuantityInput, b: QuantityInput) -> bool:
    """Whether two quantities have the same value (``"1Gi"`` equals ``"1024Mi"`` and ``1073741824``)."""
    return quantity_compare(a, b) == 0


def quantity_less(a: QuantityInput, b: QuantityInput) -> bool:
    """Whether ``a`` is strictly less than ``b``."""
    return quantity_compare(a, b) < 0


def is_zero(value: QuantityInput) -> bool:
    """Whether the quantity is zero (``"0"``, ``"0m"``, ``"0.0"``, ``0``, ``"-0"``)."""
    return parse_quantity(value, allow_negative=True) == 0


def scaled_value(value: QuantityInput, scale: int = 0) -> int:
    """apimachinery's ``ScaledValue`` for a non-negative quantity: ``ceil(value / 10^scale)``, exact.

    ``scaled_value(q)`` is ``Value()`` (``"500m"`` -> 1), ``scaled_value(q, -3)`` is ``MilliValue()``. Unlike
    Go, there is no int64 overflow. Negative values are rejected (Go's rounding of them is inconsistent).
    """
    _sign, digits, exponent = parse_quantity(value).as_tuple()
    assert isinstance(exponent, int)
    magnitude = int("".join(map(str, digits)) or "0")
    shift = exponent - scale
    result: int = magnitude * 10**shift if shift >= 0 else -(-magnitude // 10 ** (-shift))
    return result


# --- parsing ------------------------------------------------------------------------------------------------


def _parse_any(value: object) -> Quantity:
    if isinstance(value, bool):
        raise InvalidQuantity(value, "a boolean is not a quantity", go_error=None)
    if isinstance(value, str):
        return _parse_text(value)
    if isinstance(value, int):
        # str() of a huge int is slow (and raises above 4300 digits): its size decides first.
        text = str(value) if value.bit_length() <= _MAX_INT_BITS else ""
        if not text or len(text) > MAX_QUANTITY_LENGTH:
            raise InvalidQuantity(value, f"longer than {MAX_QUANTITY_LENGTH} characters", go_error=None)
        return _parse_text(text)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidQuantity(value, "not a finite number", go_error=None)
        return _parse_text(repr(value))
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise InvalidQuantity(value, "not a finite number", go_error=None)
        sign, digits, exponent = value.as_tuple()
        assert isinstance(exponent, int)
        if len(digits) > MAX_QUANTITY_LENGTH:
            raise InvalidQuantity(value, f"more than {MAX_QUANTITY_LENGTH} digits", go_error=None)
        if abs(exponent) > _MAX_EXPONENT:
            raise InvalidQuantity(value, f"exponent {exponent} is out of range", go_error=None)
        magnitude = int("".join(map(str, digits)) or "0")
        return Quantity(_make_value(sign == 1, magnitude, exponent), QuantityFormat.DECIMAL_SI)
    raise InvalidQuantity(value, f"expected a str, int or float, got {type(value).__name__}", go_error=None)


def _parse_text(text: str) -> Quantity:
    # The length is refused first: nothing below ever sees more than 64 characters.
    if len(text) > MAX_QUANTITY_LENGTH:
        raise InvalidQuantity(text, f"longer than {MAX_QUANTITY_LENGTH} characters", go_error=None)
    return _parse_short(text)


# Admission parses the same few quantities over and over (every pod has `1Gi`s and `500m`s). Both caches are
# bounded in bytes, not only in entries: a key is at most 64 characters (`_parse_text` refuses longer ones
# before the cache sees them) and a value is a Decimal of at most 64 digits plus that string, so 4096 entries
# stay well under 4 MiB whatever the input.
@functools.lru_cache(maxsize=4096)
def _parse_short(text: str) -> Quantity:
    if text == "":
        raise InvalidQuantity(text, "empty string")
    parts = _split(text)
    if parts is None:
        raise InvalidQuantity(text, f"expected <number><suffix>, {_SUFFIX_HELP}{_spelling_hint(text)}")
    sign, zeros, integer, denom, suffix = parts
    num = integer or "0"
    fmt, exponent = _interpret_suffix(text, suffix)
    has_digits = bool(zeros or integer or denom)

    # apimachinery's int64 fast path: which inputs take it decides whether the string is kept verbatim and
    # whether a number without digits (e.g. "e-10", "Ei") is an error.
    fast = False
    verbatim: str | None = "0" if text == "0" else None
    shifted = num + denom
    if fmt is QuantityFormat.BINARY_SI:
        if not denom:
            fast = 15 - len(num) - exponent * 3 // 10 - 1 >= 0
            if fast and int(num) & 7 != 0:
                verbatim = text
    else:
        scale = exponent - len(denom)
        fast = 18 - len(shifted) >= 0 and scale >= _NANO
        if fast and scale % 3 == 0 and not shifted.endswith("000") and shifted[0] != "0":
            verbatim = text
    if not fast and not has_digits:
        raise InvalidQuantity(text, "no digits in the number", go_error=GO_ERR_NUMERIC)

    magnitude = int(shifted)
    if fmt is QuantityFormat.BINARY_SI:
        magnitude <<= exponent
        amount = _make_value(sign == "-", magnitude, -len(denom), cap=_BINARY_CAP)
    else:
        amount = _make_value(sign == "-", magnitude, exponent - len(denom))
    return Quantity(amount, fmt, verbatim)


def _split(text: str) -> tuple[str, str, str, str, str] | None:
    """Sign, leading zeros, integer digits, fraction digits and suffix of `text`; None when it has another shape.

    apimachinery's scanner, one pass with no backtracking: each character is looked at once, in order. The
    suffix is letters, an optional sign and digits (validated by `_interpret_suffix`). An empty number (`Mi`,
    `.`) is legal (it is 0), as in apimachinery.
    """
    end = len(text)
    pos = 1 if end and text[0] in _SIGNS else 0
    sign = text[:pos]
    start = pos
    while pos < end and text[pos] == "0":
        pos += 1
    zeros = text[start:pos]
    start = pos
    while pos < end and text[pos] in _DIGITS:
        pos += 1
    integer = text[start:pos]
    denom = ""
    if pos < end and text[pos] == ".":
        pos += 1
        start = pos
        while pos < end and text[pos] in _DIGITS:
            pos += 1
        denom = text[start:pos]
    start = pos
    while pos < end and text[pos] in _SUFFIX_LETTERS:
        pos += 1
    if pos < end and text[pos] in _SIGNS:
        pos += 1
    while pos < end and text[pos] in _DIGITS:
        pos += 1
    return (sign, zeros, integer, denom, text[start:]) if pos == end else None


def _is_exponent(text: str) -> bool:
    """An optional sign and at least one ASCII digit (`str.isdigit` would take other scripts' digits too)."""
    digits = text[1:] if text[:1] in _SIGNS else text
    return bool(digits) and all(c in _DIGITS for c in digits)


def _interpret_suffix(text: str, suffix: str) -> tuple[QuantityFormat, int]:
    if suffix in _DECIMAL_SUFFIXES:
        return QuantityFormat.DECIMAL_SI, _DECIMAL_SUFFIXES[suffix]
    if suffix in _BINARY_SUFFIXES:
        return QuantityFormat.BINARY_SI, _BINARY_SUFFIXES[suffix]
    if len(suffix) > 1 and suffix[0] in "eE" and _is_exponent(suffix[1:]):
        exponent = int(suffix[1:])
        if abs(exponent) > _MAX_EXPONENT:
            raise InvalidQuantity(text, f"exponent {exponent} is out of range", go_error=GO_ERR_SUFFIX)
        return QuantityFormat.DECIMAL_EXPONENT, exponent
    raise InvalidQuantity(
        text, f"unknown suffix {suffix!r}; {_SUFFIX_HELP}{_spelling_hint(text)}", go_error=GO_ERR_SUFFIX
    )


_MISSPELT: Final = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]{1,3})")


def _spelling_hint(text: str) -> str:
    """`; did you mean 4Gi?` for the usual slips (`4gi`, `4GB`, `4 Gi`, `512mb`), else ""."""
    found = _MISSPELT.fullmatch(text.strip())
    if found is None:
        return ""
    number, suffix = found.groups()
    letter = suffix[0].upper() if suffix[0].lower() != "k" else "k"
    if letter not in _DECIMAL_SUFFIXES or suffix.lower() not in {
        letter.lower(),
        letter.lower() + "i",
        letter.lower() + "b",
    }:
        return ""
    binary = f"{number}{letter.upper() if letter == 'k' else letter}i"
    wanted = binary if suffix.lower().endswith("i") else f"{binary} or {number}{letter}"
    return "" if wanted == text else f"; did you mean {wanted}?"


def _make_value(negative: bool, magnitude: int, exponent: int, *, cap: int | None = None) -> Decimal:
    """``magnitude * 10^exponent``, negated if asked, rounded away from zero to the nano, maybe capped."""
    if magnitude and exponent < _NANO:
        drop = _NANO - exponent
        magnitude = 1 if drop > len(str(magnitude)) else -(-magnitude // 10**drop)
        exponent = _NANO
    if cap is not None and exponent <= 0 and magnitude > cap * 10**-exponent:
        magnitude, exponent = cap, 0
    if magnitude == 0:
        return Decimal(0)
    return Decimal(f"{'-' if negative else ''}{magnitude}E{exponent}")


# --- formatting ---------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def _canonicalize(amount: Decimal, fmt: QuantityFormat) -> str:
    if amount == 0:
        return "0"
    sign, digits, exponent = amount.as_tuple()
    assert isinstance(exponent, int)
    prefix = "-" if sign else ""
    mantissa = "".join(map(str, digits))
    if fmt is QuantityFormat.BINARY_SI:
        if abs(amount) < 1024:
            fmt = QuantityFormat.DECIMAL_SI
        elif exponent >= 0 or mantissa.endswith("0" * -exponent):
            whole = int(mantissa) * 10**exponent if exponent >= 0 else int(mantissa[:exponent])
            return prefix + _binary_text(whole)
        else:
            fmt = QuantityFormat.DECIMAL_SI
    stripped = mantissa.rstrip("0")
    exponent += len(mantissa) - len(stripped)
    power = exponent - exponent % 3
    number = stripped + "0" * (exponent - power)
    if fmt is QuantityFormat.DECIMAL_SI and power in _DECIMAL_SUFFIX_OF:
        return prefix + number + _DECIMAL_SUFFIX_OF[power]
    return prefix + number + (f"e{power}" if power else "")


def _binary_text(value: int) -> str:
    times = 0
    while value >= 1024 and value % 1024 == 0 and times < len(_BINARY_SUFFIX_OF) - 1:
        value //= 1024
        times += 1
    return f"{value}{_BINARY_SUFFIX_OF[times]}"
