"""The OpenAI-compatible chat protocol, shared by the `llm` transport and the LLM providers.

Consumes prompts/options and `/chat/completions` JSON bodies (plain or server-sent
events); produces request payloads, parsed completions and `ParsedAnswer`s.

Confidence rule (`parse_answer`), used wherever an LLM answer needs a confidence:

1. The assistant content is stripped; a surrounding Markdown code fence is removed.
2. If what remains is a JSON object with a numeric `confidence` (booleans excluded),
   that is the confidence: values in [0, 1] are used as they are, values in (1, 100]
   are read as percentages (models often write 85 for 0.85), others are clamped;
   NaN/infinity count as absent. The value is the object's `value`, else its `answer`,
   else the object without the `confidence`/`reasoning`/`uncertainties` keys;
   `reasoning` and `uncertainties` are taken when present.
3. Otherwise (plain text, malformed JSON, or an object without a usable confidence)
   no confidence was reported: the caller uses 0.5. No hedging-word heuristic is
   applied; it would be noise presented as signal.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from numbers import Real
from typing import Any

__all__ = [
    "FORMAT_INSTRUCTIONS",
    "ChatCompletion",
    "ChatProtocolError",
    "ParsedAnswer",
    "auth_headers",
    "chat_payload",
    "chat_url",
    "iter_sse_events",
    "chat_messages",
    "parse_answer",
    "parse_chat_completion",
    "stream_chunks",
]

FORMAT_INSTRUCTIONS = (
    "Answer with a single JSON object and nothing else: "
    '{"value": <your answer>, "confidence": <a number from 0 to 1: how likely your answer is correct>, '
    '"reasoning": "<one or two sentences>", "uncertainties": ["<what you are unsure about>"]}'
)
"""Appended to an `llm` agent's system prompt so its confidence can be read (rule above)."""

_FENCE = re.compile(r"^```[A-Za-z0-9_-]*\s*\n?(.*?)\n?```$", re.DOTALL)
_ANSWER_META = ("confidence", "reasoning", "uncertainties")


class ChatProtocolError(ValueError):
    """A response body that is not a chat completion, or a missing API key."""


@dataclass(frozen=True)
class ChatCompletion:
    """The useful part of a `/chat/completions` response."""

    content: str
    model: str | None = None
    tokens_used: int | None = None
    finish_reason: str | None = None
    reasoning: str | None = None


@dataclass(frozen=True)
class ParsedAnswer:
    """An assistant answer read with the confidence rule; `confidence is None` = not reported."""

    value: Any
    confidence: float | None
    reasoning: str | None = None
    uncertainties: list[str] = field(default_factory=list)
    structured: bool = False


def chat_url(base_url: str) -> str:
    """`{base_url}/chat/completions`, tolerant of a trailing slash."""
    return base_url.rstrip("/") + "/chat/completions"


def auth_headers(api_key_env: str | None, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Headers for a request: `extra` plus `Authorization: Bearer $<api_key_env>` when named.

    Raises `ChatProtocolError` when the named environment variable is unset or empty.
    """
    headers = dict(extra or {})
    if api_key_env:
        key = os.environ.get(api_key_env)
        if not key:
            raise ChatProtocolError(f"environment variable {api_key_env} (the API key) is not set")
        headers["Authorization"] = f"Bearer {key}"
    return headers


def chat_payload(model: str, messages: list[dict[str, str]], *, temperature: float | None = None,
                 max_tokens: int | None = None, top_p: float | None = None, json_mode: bool = False,
                 stream: bool = False) -> dict[str, Any]:
    """The JSON body of a chat completion request; unset options are omitted."""
    payload: dict[str, Any] = {"model": model, "messages": messages}
    if temperature is not None:
        payload["temperature"] = temperature
    if max_tokens is not None:
        payload["max_tokens"] = max_tokens
    if top_p is not None:
        payload["top_p"] = top_p
    if json_mode:
        payload["response_format"] = {"type": "json_object"}
    if stream:
        payload["stream"] = True
    return payload


def chat_messages(system: str | None, user: str) -> list[dict[str, str]]:
    """`[system?, user]` chat messages."""
    out = [{"role": "system", "content": system}] if system else []
    out.append({"role": "user", "content": user})
    return out


def parse_chat_completion(body: Any) -> ChatCompletion:
    """Extract content, model, token usage and finish reason; `ChatProtocolError` on a wrong shape."""
    if not isinstance(body, Mapping):
        raise ChatProtocolError(f"expected a JSON object, got {type(body).__name__}")
    if "error" in body and "choices" not in body:
        error = body["error"]
        detail = error.get("message", error) if isinstance(error, Mapping) else error
        raise ChatProtocolError(f"provider error: {detail}")
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
        raise ChatProtocolError("response has no choices")
    message = choices[0].get("message")
    if not isinstance(message, Mapping):
        raise ChatProtocolError("first choice has no message")
    content = message.get("content")
    if content is None:
        content = ""
    if not isinstance(content, str):
        raise ChatProtocolError(f"message content must be a string, got {type(content).__name__}")
    reasoning = message.get("reasoning_content", message.get("reasoning"))
    usage = body.get("usage")
    tokens = usage.get("total_tokens") if isinstance(usage, Mapping) else None
    model = body.get("model")
    finish = choices[0].get("finish_reason")
    return ChatCompletion(
        content=content,
        model=model if isinstance(model, str) else None,
        tokens_used=tokens if isinstance(tokens, int) and not isinstance(tokens, bool) else None,
        finish_reason=finish if isinstance(finish, str) else None,
        reasoning=reasoning if isinstance(reasoning, str) else None,
    )


def _reported_confidence(raw: Any) -> float | None:
    if isinstance(raw, bool) or not isinstance(raw, Real):
        return None
    value = float(raw)
    if not math.isfinite(value):
        return None
    if 1.0 < value <= 100.0:
        value /= 100.0
    return min(1.0, max(0.0, value))


def parse_answer(content: str) -> ParsedAnswer:
    """Read an assistant answer with the confidence rule of the module docstring."""
    text = content.strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1).strip()
    try:
        obj = json.loads(text)
    except ValueError:
        return ParsedAnswer(value=content.strip(), confidence=None)
    if not isinstance(obj, dict):
        return ParsedAnswer(value=content.strip(), confidence=None)
    if "value" in obj:
        value = obj["value"]
    elif "answer" in obj:
        value = obj["answer"]
    else:
        rest = {k: v for k, v in obj.items() if k not in _ANSWER_META}
        value = rest or None
    reasoning = obj.get("reasoning")
    raw_uncertainties = obj.get("uncertainties")
    if isinstance(raw_uncertainties, list):
        uncertainties = [str(u) for u in raw_uncertainties]
    elif isinstance(raw_uncertainties, str):
        uncertainties = [raw_uncertainties]
    else:
        uncertainties = []
    return ParsedAnswer(
        value=value,
        confidence=_reported_confidence(obj.get("confidence")),
        reasoning=None if reasoning is None else str(reasoning),
        uncertainties=uncertainties,
        structured=True,
    )


def iter_sse_events(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """JSON objects from the `data:` lines of a server-sent-event stream, up to `[DONE]`."""
    for line in lines:
        if not line.startswith("data:"):
            continue  # comments, blank separators, `event:` lines
        data = line[len("data:"):].strip()
        if data == "[DONE]":
            return
        if not data:
            continue
        try:
            event = json.loads(data)
        except ValueError as exc:
            raise ChatProtocolError(f"malformed stream event: {data[:80]!r}") from exc
        if isinstance(event, dict):
            if "error" in event and "choices" not in event:
                error = event["error"]
                detail = error.get("message", error) if isinstance(error, Mapping) else error
                raise ChatProtocolError(f"provider error: {detail}")
            yield event


def stream_chunks(event: Mapping[str, Any]) -> Iterator[dict[str, str]]:
    """Chunks (`{type: "text", text}` / `{type: "reasoning", reasoning}`) in one stream event."""
    choices = event.get("choices")
    if not isinstance(choices, list):
        return
    for choice in choices[:1]:
        delta = choice.get("delta") if isinstance(choice, Mapping) else None
        if not isinstance(delta, Mapping):
            continue
        reasoning = delta.get("reasoning_content", delta.get("reasoning"))
        if isinstance(reasoning, str) and reasoning:
            yield {"type": "reasoning", "reasoning": reasoning}
        text = delta.get("content")
        if isinstance(text, str) and text:
            yield {"type": "text", "text": text}
