"""Consumes `OrchestrationRequirements` as users write them (camelCase JSON text, a file,
or decoded data) and produces a validated pydantic model, its canonical JSON and the
content hash used as a generated pattern's id.

Errors are `RequirementsError`, whose message is meant to be shown to a person as is:
bad JSON is reported as ``file:line:col`` with the offending line and a caret, and
validation problems are listed one per field, by the field's camelCase name.

Identity rules (what makes two requests "the same" pattern):

* ``strategy`` is normalised to kebab-case ("Multi Perspective Consensus",
  "multi_perspective_consensus" and "MultiPerspectiveConsensus" are all
  ``multi-perspective-consensus``); unknown strategies are kept, the composer decides.
* ``goal`` and ``fallback`` are stripped of surrounding whitespace; a blank
  ``strategy``/``fallback`` means "not given".
* ``input`` is the data a pattern runs on, not part of what the pattern must do, so it is
  excluded from the canonical JSON and therefore from the hash: one pattern serves every
  input.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

__all__ = [
    "KNOWN_STRATEGIES",
    "OrchestrationRequirements",
    "RequirementsError",
    "canonical_json",
    "load_requirements",
    "normalize_strategy",
    "requirements_hash",
    "validate_requirements",
]

KNOWN_STRATEGIES: tuple[str, ...] = (
    "parallel",
    "sequential",
    "consensus",
    "multi-perspective-consensus",
    "voting",
    "race",
    "resilient",
    "pipeline",
    "map-reduce",
    "escalation",
)

PATTERN_ID_PREFIX = "pat_"
_PATTERN_ID_HEX_CHARS = 16
_SNIPPET_WIDTH = 100


class RequirementsError(ValueError):
    """Requirements could not be read or are invalid; ``str(err)`` is user-facing.

    ``problems`` holds one line per problem (``"minConfidence: must be between 0 and 1
    (got 1.5)"``); ``line``/``column`` are set (1-based) for JSON syntax errors.
    """

    def __init__(
        self,
        message: str,
        *,
        source: str = "<requirements>",
        problems: tuple[str, ...] = (),
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        super().__init__(message)
        self.source = source
        self.problems = problems
        self.line = line
        self.column = column


# --------------------------------------------------------------------------- model


def normalize_strategy(name: str) -> str:
    """Kebab-case a strategy name: ``"Map_Reduce"``, ``"mapReduce"`` → ``"map-reduce"``."""
    text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", name.strip())  # split camelCase humps
    text = re.sub(r"[\s_\-]+", "-", text.lower())
    return text.strip("-")


def _describe(value: Any) -> str:
    """A short rendering of an offending value for error messages."""
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "an array"
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = type(value).__name__
    return text if len(text) <= 60 else text[:57] + "..."


def _check_json_value(value: Any, where: str) -> Any:
    """Return ``value`` as plain JSON data (tuples become lists) or raise a custom error."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise PydanticCustomError(
                "json_number", "{where} contains {value}, which is not a JSON number",
                {"where": where, "value": repr(value)},
            )
        return value
    if isinstance(value, list | tuple):
        return [_check_json_value(item, where) for item in value]
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise PydanticCustomError(
                    "json_key", "{where} has a non-string key {key}",
                    {"where": where, "key": repr(key)},
                )
            out[key] = _check_json_value(item, where)
        return out
    raise PydanticCustomError(
        "json_value", "{where} contains a {kind}, which is not JSON data",
        {"where": where, "kind": type(value).__name__},
    )


class OrchestrationRequirements(BaseModel):
    """What the user wants orchestrated, as written in a requirements JSON file.

    JSON uses camelCase (``minConfidence``); Python code may also use the field names
    (``min_confidence=``). Unknown fields are rejected.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_alias=True,
        validate_by_name=True,
        serialize_by_alias=True,
        extra="forbid",
        frozen=True,
    )

    goal: str
    strategy: str | None = None
    min_confidence: float | None = None
    fallback: str | None = None
    context: dict[str, Any] = {}
    input: Any = None

    @field_validator("goal", mode="before")
    @classmethod
    def _goal(cls, value: Any) -> str:
        if not isinstance(value, str):
            raise PydanticCustomError(
                "goal_type", "must be a non-empty string (got {got})", {"got": _describe(value)}
            )
        if not value.strip():
            raise PydanticCustomError("goal_empty", "must not be empty")
        return value.strip()

    @field_validator("strategy", mode="before")
    @classmethod
    def _strategy(cls, value: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise PydanticCustomError(
                "strategy_type", "must be a string such as \"consensus\" (got {got})",
                {"got": _describe(value)},
            )
        return normalize_strategy(value) or None

    @field_validator("min_confidence", mode="before")
    @classmethod
    def _min_confidence(cls, value: Any) -> float | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise PydanticCustomError(
                "confidence_type", "must be a number between 0 and 1 (got {got})",
                {"got": _describe(value)},
            )
        number = float(value)
        if not (0.0 <= number <= 1.0):  # also rejects NaN
            raise PydanticCustomError(
                "confidence_range", "must be between 0 and 1 (got {got})", {"got": repr(value)}
            )
        return number

    @field_validator("fallback", mode="before")
    @classmethod
    def _fallback(cls, value: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise PydanticCustomError(
                "fallback_type", "must be a string naming an agent or pattern (got {got})",
                {"got": _describe(value)},
            )
        return value.strip() or None

    @field_validator("context", mode="before")
    @classmethod
    def _context(cls, value: Any) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise PydanticCustomError(
                "context_type", "must be a JSON object (got {got})", {"got": _describe(value)}
            )
        checked: dict[str, Any] = _check_json_value(value, "the context")
        return checked

    @field_validator("input", mode="before")
    @classmethod
    def _input(cls, value: Any) -> Any:
        return _check_json_value(value, "the input")

    @property
    def strategy_is_known(self) -> bool:
        """True when ``strategy`` is one of `KNOWN_STRATEGIES` (or not given)."""
        return self.strategy is None or self.strategy in KNOWN_STRATEGIES


_FIELD_NAMES: tuple[str, ...] = tuple(
    info.alias or name for name, info in OrchestrationRequirements.model_fields.items()
)


# --------------------------------------------------------------------------- errors


def _loc_name(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + item)
    return "".join(parts) or "(requirements)"


def _unknown_field_problem(name: str) -> str:
    squash = {re.sub(r"[\W_]", "", f).lower(): f for f in _FIELD_NAMES}
    guess = squash.get(re.sub(r"[\W_]", "", name).lower())
    if guess is None:
        close = difflib.get_close_matches(name, _FIELD_NAMES, n=1, cutoff=0.6)
        guess = close[0] if close else None
    hint = f"; did you mean {guess!r}?" if guess else ""
    allowed = ", ".join(_FIELD_NAMES)
    return f"{name}: unknown field{hint} (allowed fields: {allowed})"


def _problems(err: ValidationError) -> tuple[str, ...]:
    out: list[str] = []
    for item in err.errors(include_url=False):
        loc = tuple(item.get("loc", ()))
        kind = item.get("type")
        if kind == "extra_forbidden":
            out.append(_unknown_field_problem(_loc_name(loc)))
        elif kind == "missing":
            out.append(f"{_loc_name(loc)}: required field is missing")
        elif kind == "model_type" and not loc:
            out.append(
                f"requirements must be a JSON object (got {_describe(item.get('input'))})"
            )
        else:
            out.append(f"{_loc_name(loc)}: {item.get('msg', 'is invalid')}")
    return tuple(out)


def validate_requirements(
    data: Any, *, source: str = "<requirements>"
) -> OrchestrationRequirements:
    """Validate already-decoded JSON data (camelCase keys only), e.g. an HTTP request body."""
    try:
        return OrchestrationRequirements.model_validate(data, by_alias=True, by_name=False)
    except ValidationError as exc:
        problems = _problems(exc)
        noun = "problem" if len(problems) == 1 else "problems"
        lines = "\n".join(f"  {p}" for p in problems)
        raise RequirementsError(
            f"invalid requirements in {source} ({len(problems)} {noun}):\n{lines}",
            source=source,
            problems=problems,
        ) from None


# --------------------------------------------------------------------------- loading


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _json_syntax_error(exc: json.JSONDecodeError, text: str, source: str) -> RequirementsError:
    lines = text.splitlines()
    line_text = lines[exc.lineno - 1].replace("\t", " ") if exc.lineno <= len(lines) else ""
    start = max(0, exc.colno - 1 - _SNIPPET_WIDTH // 2)  # window long (minified) lines
    snippet = line_text[start : start + _SNIPPET_WIDTH]
    caret = " " * (exc.colno - 1 - start) + "^"
    message = (
        f"{source}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}\n"
        f"    {snippet}\n    {caret}"
    )
    return RequirementsError(
        message, source=source, problems=(exc.msg,), line=exc.lineno, column=exc.colno
    )


def _parse_json(text: str, source: str) -> Any:
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise _json_syntax_error(exc, text, source) from None
    except ValueError as exc:  # NaN / Infinity literals
        raise RequirementsError(
            f"{source}: invalid JSON: {exc}", source=source, problems=(str(exc),)
        ) from None


def _read_file(path: Path) -> str:
    shown = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise RequirementsError(
            f"requirements file not found: {shown}", source=shown,
            problems=("file not found",),
        ) from None
    except IsADirectoryError:
        raise RequirementsError(
            f"{shown} is a directory, not a requirements JSON file", source=shown,
            problems=("is a directory",),
        ) from None
    except OSError as exc:
        raise RequirementsError(
            f"cannot read requirements file {shown}: {exc.strerror or exc}", source=shown,
            problems=(str(exc),),
        ) from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RequirementsError(
            f"{shown}: not UTF-8 text (byte {exc.start}); requirements must be UTF-8 JSON",
            source=shown, problems=(str(exc),),
        ) from None


def _looks_like_json_text(text: str) -> bool:
    stripped = text.lstrip()
    return stripped.startswith(("{", "[")) or "\n" in stripped


def load_requirements(path_or_text: str | os.PathLike[str]) -> OrchestrationRequirements:
    """Load requirements from a JSON file path or from JSON text.

    A ``str`` whose first non-blank character is ``{`` or ``[`` (or that spans several
    lines) is parsed as JSON text; any other ``str`` or path-like is a file name.
    Raises `RequirementsError` with a user-facing message on any problem.
    """
    if isinstance(path_or_text, str) and not path_or_text.strip():
        raise RequirementsError(
            "no requirements given: expected a JSON file path or JSON text",
            problems=("empty input",),
        )
    if isinstance(path_or_text, str) and _looks_like_json_text(path_or_text):
        text, source = path_or_text, "<requirements>"
    else:
        path = Path(path_or_text)
        text, source = _read_file(path), str(path)
    return validate_requirements(_parse_json(text, source), source=source)


# --------------------------------------------------------------------------- identity


def _canonical_value(value: Any) -> Any:
    # JSON has one number type: 1 and 1.0 are the same requirement.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_canonical_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _canonical_value(v) for k, v in value.items()}
    return value


def _canonical_data(req: OrchestrationRequirements) -> dict[str, Any]:
    data = {
        "goal": req.goal,
        "strategy": req.strategy,
        "minConfidence": req.min_confidence,
        "fallback": req.fallback,
        "context": req.context,
    }
    return {k: _canonical_value(v) for k, v in data.items() if v is not None}


def _dumps(data: Any) -> str:
    return json.dumps(
        data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def canonical_json(req: OrchestrationRequirements) -> str:
    """The requirements as canonical JSON: camelCase, sorted keys, no whitespace.

    Fields that are not given (None) are omitted and integral numbers are written
    without a fraction. ``input`` is deliberately excluded: it is the data a pattern
    runs on, not part of what the pattern has to do, so every input reuses one pattern.
    """
    return _dumps(_canonical_data(req))


def requirements_hash(
    req: OrchestrationRequirements, composer_id: str, composer_version: str
) -> str:
    """Pattern id for ``req`` composed by a given composer: ``"pat_"`` + 16 hex digits.

    It is the SHA-256 of the canonical requirements together with the composer's
    identity and version, so a new composer version never reuses an old pattern.
    """
    envelope = _dumps(
        {
            "composer": composer_id,
            "composerVersion": composer_version,
            "requirements": _canonical_data(req),
        }
    )
    digest = hashlib.sha256(envelope.encode("utf-8")).hexdigest()
    return PATTERN_ID_PREFIX + digest[:_PATTERN_ID_HEX_CHARS]
