"""How gearmand's C code reads the bytes it is given, for the rules that depend on it.

gearmand parses numbers with ``atoi``/``strtol`` and treats most arguments as
C strings, so ``b"12abc"`` is 12, ``b"abc"`` is 0 and anything after a NUL is
not seen.  Matching that is part of answering like gearmand.
"""

from __future__ import annotations

LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1


class CloseConnection(Exception):
    """Raised for input that gearmand answers by closing the connection."""


def c_strtol(text: bytes) -> tuple[int, bool]:
    """C ``strtol(text, NULL, 10)`` on a 64-bit system: the value, and whether it
    overflowed (then the value is clamped to LONG_MIN/LONG_MAX, as in C)."""
    stripped = c_string(text).lstrip(b" \t\n\v\f\r")
    sign = 1
    if stripped[:1] in (b"+", b"-"):
        sign = -1 if stripped[:1] == b"-" else 1
        stripped = stripped[1:]
    digits = len(stripped) - len(stripped.lstrip(b"0123456789"))
    value = sign * int(stripped[:digits]) if digits else 0
    if value > LONG_MAX:
        return LONG_MAX, True
    if value < LONG_MIN:
        return LONG_MIN, True
    return value, False


def c_atoi(text: bytes) -> int:
    """C ``atoi`` as glibc has it: ``(int) strtol(text, NULL, 10)``."""
    value = c_strtol(text)[0] & 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def c_uint32(text: bytes) -> int:
    """``(uint32_t) atoi(text)``: how gearmand stores WORK_STATUS numbers."""
    return c_strtol(text)[0] & 0xFFFFFFFF


def c_string(arg: bytes) -> bytes:
    """An argument as C code sees it: up to the first NUL."""
    cut = arg.find(b"\0")
    return arg if cut < 0 else arg[:cut]
