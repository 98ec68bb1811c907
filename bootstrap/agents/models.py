"""Data models of the agent layer: requests, responses and agent/LLM-provider specs.

Consumes plain Python values (TOML tables, agent return values, JSON bodies) and
produces validated pydantic models; configuration errors become `AgentSpecError`.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping
from numbers import Real
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

__all__ = [
    "DEFAULT_CONFIDENCE",
    "AgentRequest",
    "AgentResponse",
    "AgentSpec",
    "AgentSpecError",
    "LLMProviderSpec",
    "Transport",
    "normalize_confidence",
]

DEFAULT_CONFIDENCE = 0.5
"""Confidence of an answer that does not state one (design §7)."""

Transport = Literal["python", "http", "llm", "simulated"]

_AGENT_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
_TARGET = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


def normalize_confidence(raw: Any) -> tuple[float, str | None]:
    """Turn a reported confidence into a float in [0, 1], plus a problem note.

    Missing (`None`) means `DEFAULT_CONFIDENCE`; finite numbers are clamped silently;
    NaN, infinities, booleans and non-numbers give 0.0 and a note saying why.
    """
    if raw is None:
        return DEFAULT_CONFIDENCE, None
    if isinstance(raw, bool) or not isinstance(raw, Real):
        return 0.0, f"confidence must be a number, got {type(raw).__name__} {raw!r:.60}"
    value = float(raw)
    if not math.isfinite(value):
        return 0.0, f"confidence must be a finite number, got {value}"
    return min(1.0, max(0.0, value)), None


def _join_errors(*errors: str | None) -> str | None:
    present = [e for e in errors if e]
    return "; ".join(present) if present else None


class AgentRequest(BaseModel):
    """What an agent is asked: a task description, its data, and free-form context."""

    task: str
    data: Any = None
    context: dict[str, Any] = Field(default_factory=dict)

    def payload(self) -> dict[str, Any]:
        """The JSON body sent to HTTP agents: `{task, data, context}`."""
        return {"task": self.task, "data": self.data, "context": self.context}


_RESPONSE_FIELDS = ("value", "confidence", "reasoning", "uncertainties", "metadata", "error")


class AgentResponse(BaseModel):
    """An agent's answer: a value with a confidence in [0, 1] (0.5 when not stated).

    A transport failure is a response too: `confidence == 0` and `error` set.
    """

    value: Any = None
    confidence: float = DEFAULT_CONFIDENCE
    reasoning: str | None = None
    uncertainties: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _normalize(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        data = dict(data)
        confidence, problem = normalize_confidence(data.get("confidence"))
        data["confidence"] = confidence
        if problem:
            data["error"] = _join_errors(data.get("error"), problem)
        return data

    @property
    def ok(self) -> bool:
        """True when the response carries no error."""
        return self.error is None

    @classmethod
    def failure(cls, error: str, **metadata: Any) -> AgentResponse:
        """A failed call: no value, confidence 0, the given error message."""
        return cls(value=None, confidence=0.0, error=error, metadata=metadata)

    @classmethod
    def from_raw(cls, raw: Any) -> AgentResponse:
        """Interpret whatever an agent returned; never raises.

        * an `AgentResponse` is returned as a copy;
        * a mapping with a `value` or `confidence` key is read as a response: known
          fields are coerced leniently (a string `uncertainties` becomes a one-item
          list, a non-string `reasoning` is stringified) and unknown keys are kept in
          `metadata`; a field that still does not fit gives confidence 0 and an error;
        * anything else is the value itself, at the default confidence 0.5.
        """
        if isinstance(raw, AgentResponse):  # copied: callers add metadata to the result
            return raw.model_copy(update={"metadata": dict(raw.metadata)})
        if isinstance(raw, Mapping) and ("value" in raw or "confidence" in raw):
            return cls._from_mapping(raw)
        return cls(value=raw)

    @classmethod
    def _from_mapping(cls, raw: Mapping[Any, Any]) -> AgentResponse:
        problems: list[str] = []
        fields: dict[str, Any] = {"value": raw.get("value"), "confidence": raw.get("confidence")}

        reasoning = raw.get("reasoning")
        fields["reasoning"] = None if reasoning is None else str(reasoning)

        uncertainties = raw.get("uncertainties")
        if uncertainties is None:
            fields["uncertainties"] = []
        elif isinstance(uncertainties, str):
            fields["uncertainties"] = [uncertainties]
        elif isinstance(uncertainties, (list, tuple)):
            fields["uncertainties"] = [str(u) for u in uncertainties]
        else:
            problems.append(f"uncertainties must be a list of strings, got {type(uncertainties).__name__}")

        metadata = raw.get("metadata")
        if metadata is None:
            fields["metadata"] = {}
        elif isinstance(metadata, Mapping):
            fields["metadata"] = {str(k): v for k, v in metadata.items()}
        else:
            problems.append(f"metadata must be an object, got {type(metadata).__name__}")
            fields["metadata"] = {}
        for key, extra in raw.items():
            if key not in _RESPONSE_FIELDS:
                fields["metadata"].setdefault(str(key), extra)

        error = raw.get("error")
        fields["error"] = None if error is None else str(error)

        if problems:
            return cls.failure("invalid agent response: " + "; ".join(problems))
        try:
            return cls.model_validate(fields)
        except ValidationError as exc:  # defensive: the coercions above should prevent it
            return cls.failure(f"invalid agent response: {exc}")


class AgentSpecError(ValueError):
    """An agent (or LLM provider) declaration is invalid; names the entry and fields."""

    def __init__(self, kind: str, name: str, problems: list[str]) -> None:
        self.kind = kind
        self.name = name
        self.problems = problems
        head = f"{kind} '{name}'"
        if len(problems) == 1:
            message = f"{head}: {problems[0]}"
        else:
            message = f"{head}:\n" + "\n".join(f"  - {p}" for p in problems)
        super().__init__(message)


def _describe_validation_error(model: type[BaseModel], exc: ValidationError) -> list[str]:
    """Render pydantic errors as "field 'x': problem" lines, with did-you-mean hints."""
    known = sorted(model.model_fields)
    problems = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(part) for part in err["loc"])
        if err["type"] == "extra_forbidden":
            hint = difflib.get_close_matches(str(err["loc"][0]), known, n=1)
            suffix = f" (did you mean '{hint[0]}'?)" if hint else f" (known fields: {', '.join(known)})"
            problems.append(f"unknown field '{loc}'{suffix}")
        elif err["type"] == "literal_error" and loc == "transport":
            options = "python, http, llm, simulated"
            problems.append(f"unknown transport {err['input']!r} (expected one of: {options})")
        elif loc == "capabilities" or loc.startswith("capabilities."):
            got = f"got {err['input']!r:.60}" if loc == "capabilities" else f"item {loc[13:]} is {err['input']!r:.60}"
            problems.append(f"field 'capabilities' must be a list of strings, e.g. [\"security\"] ({got})")
        elif not loc:  # raised by a model validator: the message names its fields
            problems.append(str(err["msg"]).removeprefix("Value error, "))
        elif err["type"] == "missing":
            problems.append(f"field '{loc}' is required")
        else:
            msg = str(err["msg"]).removeprefix("Value error, ")
            problems.append(f"field '{loc}': {msg} (got {err['input']!r:.60})")
    return problems


class AgentSpec(BaseModel):
    """One declared agent: identity, capabilities and how to reach it.

    Transport-specific fields: `python` needs `target` ("module:attr"); `http` needs
    `url`; `llm` needs `base_url` and `model` (optional `api_key_env`, `system`,
    `temperature`, `max_tokens`); `simulated` uses `seed`, `accuracy`, `calibration`,
    `latency_ms`, `jitter_ms`, `failure_rate`. `timeout` (seconds) bounds every call.
    `base_dir` is where `python` targets are looked up first; `load_registry` sets it
    to the TOML file's directory.
    """

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    id: str
    transport: Transport
    capabilities: list[str] = Field(default_factory=list)
    expertise: float = Field(default=0.7, ge=0.0, le=1.0)
    name: str | None = None
    description: str = ""
    timeout: float = Field(default=30.0, gt=0.0)
    # python
    target: str | None = None
    base_dir: str | None = None
    # http (and llm)
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    # llm
    base_url: str | None = None
    model: str | None = None
    api_key_env: str | None = None
    system: str | None = None
    temperature: float | None = Field(default=None, ge=0.0)
    max_tokens: int | None = Field(default=None, gt=0)
    # simulated
    seed: int | None = None
    accuracy: float = Field(default=0.8, ge=0.0, le=1.0)
    calibration: float = Field(default=0.8, ge=0.0, le=1.0)
    latency_ms: float = Field(default=0.0, ge=0.0)
    jitter_ms: float = Field(default=0.0, ge=0.0)
    failure_rate: float = Field(default=0.0, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _check_transport_fields(self) -> AgentSpec:
        problems = []
        if not _AGENT_ID.match(self.id):
            problems.append("the id must be letters, digits, '_', '-' or '.' (and not start with '-' or '.')")
        if len(set(self.capabilities)) != len(self.capabilities):
            problems.append("field 'capabilities' lists a capability twice")
        if any(not c.strip() for c in self.capabilities):
            problems.append("field 'capabilities' contains an empty name")
        if self.transport == "python":
            if self.target is None:
                problems.append("field 'target' is required for transport 'python' (e.g. target = \"agents:review\")")
            elif not _TARGET.match(self.target):
                problems.append(f"field 'target' must look like 'package.module:function', got {self.target!r}")
        elif self.transport == "http":
            if self.url is None:
                problems.append("field 'url' is required for transport 'http' (the endpoint to POST to)")
            elif not self.url.startswith(("http://", "https://")):
                problems.append(f"field 'url' must start with http:// or https://, got {self.url!r}")
        elif self.transport == "llm":
            for name in ("base_url", "model"):
                if getattr(self, name) is None:
                    problems.append(f"field '{name}' is required for transport 'llm'")
            if self.base_url is not None and not self.base_url.startswith(("http://", "https://")):
                problems.append(f"field 'base_url' must start with http:// or https://, got {self.base_url!r}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @classmethod
    def from_config(cls, agent_id: str, table: Mapping[str, Any], *, base_dir: Path | None = None) -> AgentSpec:
        """Validate one `[agents.<id>]` table; raises `AgentSpecError` naming agent and fields."""
        if not isinstance(table, Mapping):
            raise AgentSpecError("agent", agent_id, [f"must be a table, got {type(table).__name__}"])
        data = dict(table)
        if "id" in data and data["id"] != agent_id:
            raise AgentSpecError("agent", agent_id, [f"field 'id' ({data['id']!r}) differs from the table name"])
        data["id"] = agent_id
        if base_dir is not None:
            explicit = data.get("base_dir")
            if isinstance(explicit, str):
                data["base_dir"] = str((base_dir / explicit).resolve())
            elif explicit is None:
                data["base_dir"] = str(base_dir)
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise AgentSpecError("agent", agent_id, _describe_validation_error(cls, exc)) from None

    @property
    def display_name(self) -> str:
        return self.name or self.id

    def summary(self) -> dict[str, Any]:
        """The public description of the agent (what patterns see in an agent list)."""
        return {
            "id": self.id,
            "name": self.display_name,
            "capabilities": list(self.capabilities),
            "expertise": self.expertise,
            "transport": self.transport,
            "description": self.description,
        }


class LLMProviderSpec(BaseModel):
    """One `[llm.providers.<name>]` table: a provider for the language's `llm()` built-in.

    `type = "openai"` (default) is an OpenAI-compatible endpoint and needs `base_url`
    and `model`; `type = "mock"` is the offline `MockProvider` (`response`,
    `confidence`, `latency_ms`). `timeout` is in seconds.
    """

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    name: str
    type: Literal["openai", "mock"] = "openai"
    default: bool = False
    base_url: str | None = None
    model: str | None = None
    api_key_env: str | None = None
    system: str | None = None
    timeout: float = Field(default=60.0, gt=0.0)
    temperature: float | None = Field(default=None, ge=0.0)
    max_tokens: int | None = Field(default=None, gt=0)
    headers: dict[str, str] = Field(default_factory=dict)
    response: str | None = None
    confidence: float | None = Field(default=None, ge=0.0, le=1.0)
    latency_ms: float = Field(default=0.0, ge=0.0)

    @model_validator(mode="after")
    def _check_type_fields(self) -> LLMProviderSpec:
        if self.type == "openai":
            missing = [f"field '{n}' is required for type 'openai'"
                       for n in ("base_url", "model") if getattr(self, n) is None]
            if missing:
                raise ValueError("; ".join(missing))
        return self

    @classmethod
    def from_config(cls, name: str, table: Mapping[str, Any]) -> LLMProviderSpec:
        """Validate one provider table; raises `AgentSpecError` naming provider and fields."""
        if not isinstance(table, Mapping):
            raise AgentSpecError("LLM provider", name, [f"must be a table, got {type(table).__name__}"])
        try:
            return cls.model_validate({**table, "name": name})
        except ValidationError as exc:
            raise AgentSpecError("LLM provider", name, _describe_validation_error(cls, exc)) from None
