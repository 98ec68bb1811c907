"""``llm()`` and ``stream_llm()``: argument checks and the call into host providers.

Consumes Prism arguments and the providers the host registered on the runtime
(``rt.host.llm_providers``: name -> object with ``complete(prompt, options)``);
produces a confident string (spec §5.8).
"""
from __future__ import annotations

from typing import Any

from .errors import PrismError, PrismRuntimeError
from .runtime import Runtime, call_value
from .values import Builtin, Confident, Function, from_host, make_conf

_OPTION_TYPES = {"provider": str, "providerName": str, "model": str, "temperature": float, "maxTokens": float,
                 "topP": float, "timeout": float, "structuredOutput": bool, "includeReasoning": bool}


def _args(args: list, fname: str) -> tuple[str, dict]:
    if not args:
        raise PrismRuntimeError(f"{fname}() requires at least one argument")
    prompt = args[0].value if type(args[0]) is Confident else args[0]
    if type(prompt) is not str:
        raise PrismRuntimeError(f"{fname}() first argument must be a string")
    opts: dict = {}
    if len(args) > 1 and args[1] is not None:
        o = args[1].value if type(args[1]) is Confident else args[1]
        if type(o) is not dict:
            raise PrismRuntimeError(f"{fname}() options must be an object")
        for k, v in o.items():
            if v is None:
                continue
            want = _OPTION_TYPES.get(k)
            if want is not None and type(v) is not want:
                kind = {str: "string", float: "number", bool: "boolean"}[want]
                raise PrismRuntimeError(f"{fname}() option '{k}' must be a {kind}")
            if k == "extractor" and not isinstance(v, Function):
                raise PrismRuntimeError(f"{fname}() extractor must be a function")
            opts[k] = v
    return prompt, opts


def _provider(rt: Runtime, opts: dict) -> Any:
    providers = getattr(rt.host, "llm_providers", None) or {}
    name = opts.get("provider") or opts.get("providerName")
    if name is not None:
        if name not in providers:
            raise PrismRuntimeError(f"LLM provider '{name}' not found")
        return name, providers[name]
    default = getattr(rt.host, "default_llm_provider", None)
    if default is None or default not in providers:
        raise PrismRuntimeError("No LLM provider configured (declare one under [llm.providers] in agents.toml)")
    return default, providers[default]


def call_llm(rt: Runtime, args: list) -> Any:
    prompt, opts = _args(args, "llm")
    name, provider = _provider(rt, opts)
    host_opts = {k: v for k, v in opts.items() if k not in ("extractor", "confidenceExtractor")}
    rt.budget.check_time()
    try:
        resp = provider.complete(prompt, host_opts)
    except PrismError:
        raise
    except Exception as e:  # noqa: BLE001 - any provider failure becomes a Prism error
        raise PrismRuntimeError(f"LLM call failed: {e}") from None
    content = str(resp.get("content", ""))
    rt.budget.check_string(len(content))
    conf = resp.get("confidence", 0.5)
    try:
        conf = make_conf(float(conf))
    except (TypeError, ValueError, PrismRuntimeError):
        conf = 0.5
    rt.emit({"event": "llm_call", "provider": name, "model": resp.get("model"), "confidence": conf})
    extractor = opts.get("extractor")
    if extractor is not None:
        info = from_host({"content": content, "confidence": conf, "model": resp.get("model"),
                          "tokensUsed": resp.get("tokensUsed", 0), "provider": name, "prompt": prompt,
                          "metadata": resp.get("metadata") or {}})
        try:
            r = call_value(rt, extractor, [info])
        except PrismRuntimeError as e:
            raise PrismRuntimeError(f"LLM call failed: {e.message}") from None
        if type(r) is Confident:
            conf = r.conf
        elif type(r) is float:
            conf = make_conf(r)
        elif type(r) is dict and type(r.get("confidence")) is float:
            conf = make_conf(r["confidence"])
        else:
            raise PrismRuntimeError("llm() extractor must return a number, confident value, or object with a "
                                    "numeric confidence field")
    return Confident(content, conf)


def stream_llm(rt: Runtime, args: list) -> Any:
    prompt, opts = _args(args, "stream_llm")
    name, provider = _provider(rt, opts)
    state: dict[str, Any] = {"chunks": None, "i": 0, "cancelled": False, "result": None}

    def start() -> None:
        if state["chunks"] is not None:
            return
        stream = getattr(provider, "stream", None)
        try:
            if stream is None:
                resp = provider.complete(prompt, opts)
                state["result"] = resp
                state["chunks"] = [{"type": "text", "text": str(resp.get("content", ""))}]
            else:
                s = stream(prompt, opts)
                state["chunks"] = list(s)
                state["result"] = getattr(s, "response", None)
        except Exception as e:  # noqa: BLE001
            state["chunks"] = [{"type": "error", "error": str(e)}]
            state["error"] = str(e)

    def next_(a: list) -> Any:
        if state["cancelled"]:
            return None
        start()
        i = state["i"]
        if i >= len(state["chunks"]):
            return None
        state["i"] = i + 1
        return from_host(state["chunks"][i])

    def result(a: list) -> Any:
        from .values import Promise
        if state["cancelled"]:
            return Promise.rejected(PrismRuntimeError("LLM stream was cancelled"))
        start()
        if state.get("error"):
            return Promise.rejected(PrismRuntimeError(f"LLM call failed: {state['error']}"))
        resp = state["result"] or {}
        text = "".join(c.get("text", "") for c in state["chunks"] if c.get("type") == "text")
        try:
            conf = make_conf(float(resp.get("confidence", 0.5)))
        except (TypeError, ValueError, PrismRuntimeError):
            conf = 0.5
        return Promise.resolved(Confident(str(resp.get("content", text)), conf))

    def cancel(a: list) -> None:
        state["cancelled"] = True
        return None

    return {"next": Builtin("next", next_), "result": Builtin("result", result), "cancel": Builtin("cancel", cancel)}
