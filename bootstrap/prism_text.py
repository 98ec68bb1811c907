"""Text that goes into generated Prism source: string literals, comments, numbers, JSON.

Consumes Python strings/numbers/JSON data; produces Prism source fragments. `prism_string`
is the one escaping function for outside text in generated code (tested against hostile
input): its literal can neither end early, break the line, nor interpolate.
"""
from __future__ import annotations

import math
import re
import unicodedata
from typing import Any

from kernel.parser import RESERVED

__all__ = ["IDENTIFIER", "comment_text", "prism_key", "prism_literal", "prism_number", "prism_string"]

IDENTIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,39}$")
"""Names rendered as identifiers (step names, option keys): short, ASCII, no ``$``."""


def prism_string(text: str) -> str:
    """A Prism double-quoted string literal whose value is exactly ``text``.

    The one escaping function for outside text. Backslash and quote are escaped, ``$`` is
    written ``\\$`` (never starts an interpolation), newline/tab/CR use their short escapes
    and every other non-printable character (controls, line/paragraph separators, format
    characters, lone surrogates) becomes ``\\uXXXX``, so the literal stays on one line and
    ends exactly at its closing quote.
    """
    if not isinstance(text, str):
        raise TypeError(f"prism_string expects a str, got {type(text).__name__}")
    out = ['"']
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "$":
            out.append("\\$")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ch.isprintable() and unicodedata.category(ch) not in ("Cs", "Co", "Cn"):
            out.append(ch)
        elif ord(ch) <= 0xFFFF:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\u{{{ord(ch):x}}}")
    out.append('"')
    return "".join(out)


def comment_text(text: str, limit: int = 160) -> str:
    """``text`` folded to one printable line for a ``//`` comment, at most ``limit`` chars."""
    chars = [ch if (ch.isprintable() and unicodedata.category(ch) not in ("Cs", "Co", "Cn")) else " "
             for ch in str(text)]
    one = " ".join("".join(chars).split()).replace("*/", "* /")
    return one if len(one) <= limit else one[: limit - 3] + "..."


def prism_number(x: float | int) -> str:
    """A finite number as a Prism literal (no exponent; negative numbers parenthesised)."""
    if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x):
        raise ValueError(f"not a finite number: {x!r}")
    if float(x).is_integer() and abs(x) < 2 ** 53:
        text = str(int(x))
    else:
        text = repr(float(x))
        if "e" in text or "E" in text:
            text = f"{float(x):.20f}".rstrip("0").rstrip(".")
    return f"({text})" if text.startswith("-") else text


def prism_literal(value: Any) -> str:
    """JSON data as a Prism literal; strings and keys through `prism_string`."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int | float):
        return prism_number(value)
    if isinstance(value, str):
        return prism_string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(prism_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{prism_key(k)}: {prism_literal(v)}" for k, v in value.items()) + "}"
    raise ValueError(f"not JSON data: {type(value).__name__}")


def prism_key(key: str) -> str:
    """An object-literal key: the name itself when it is a plain identifier, else a string."""
    return key if IDENTIFIER.match(key) and key not in RESERVED else prism_string(str(key))
