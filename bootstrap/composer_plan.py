"""Composition plans: a JSON tree of primitive calls (what the LLM composer asks a model
for), its validation against the real primitive catalog and the agent registry, and the
deterministic renderer that turns a valid plan into readable Prism source.

Consumes a plan (decoded JSON), the `OrchestrationRequirements`, the `Registry` and the
primitive catalog read from ``primitives/*.prism``; produces a `Plan` (or a list of
concrete error strings meant to be fed back to the model) and Prism source.

Plan shape (every object has a ``kind``; unknown keys are rejected)::

    {"strategy": "consensus", "rationale": "…",
     "steps": [{"name": "reviews", "expr": {"kind": "call", "primitive": "parallel",
                 "args": [{"kind": "list", "items": [
                     {"kind": "agent", "agent": "security", "task": "…", "data": {"kind": "input"}}]}],
                 "options": {"maxConcurrency": 3}}},
               {"name": "agreed", "expr": {"kind": "call", "primitive": "consensus",
                 "args": [{"kind": "ref", "step": "reviews"}], "options": {"threshold": 0.3}}}],
     "output": "agreed", "minConfidence": 0.9, "fallback": {"agent": "senior-architect"}}

``root`` (one expression) may replace ``steps``. Other nodes: ``input``, ``previous``
(what a primitive hands a task it runs), ``literal`` (any JSON), ``ref`` (an earlier step),
``list``, ``object`` (fields are nodes), ``agent`` (one agent call). ``data`` of an agent
also accepts the strings ``"input"``, ``"previous"`` and ``"none"``.

Rendering rules (the *position* decides what a node becomes, from the primitive's
parameter kinds in the catalog):

* task position (``parallel``'s list, ``retry``'s operation…): an agent call becomes an
  agent-call descriptor ``{agent: agents["id"], task, data}`` that the primitive starts
  (and cancels, e.g. for race losers); with data ``previous`` it becomes
  ``chained("id", task)``, a function that passes the agent ``{input, previous}`` where
  ``previous`` is what the primitive hands the task (sequential's previous result, an
  escalation context, a batch item…, or null); a nested call becomes ``() => prim(…)``;
  a list or object in a ``tasks`` position holds tasks;
* value position: agent and primitive calls are awaited; a list holding calls becomes
  ``await Promise.all([...])`` so that its calls overlap.

Parameter kinds come from the library's own parameter names (``tasks``, ``task``,
``alternatives``, ``...rest`` = options …, see ``_param_mode``); a parameter that needs a
plain function (``reducer``, ``keyOf`` …) cannot be planned and is reported as such.

Safety rule: the only text from outside (goal, strategy, rationale, agent tasks, literal
strings, object keys) reaches the source through `prism_string` (a string literal that
can neither end early nor interpolate) or `comment_text` (one printable comment line),
both in `bootstrap.prism_text`. Numbers are rendered from validated finite floats,
identifiers from validated names (a plan is validated again before every render).
"""
from __future__ import annotations

import difflib
import json
import math
import re
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from kernel.builtins import GLOBAL_NAMES
from kernel.parser import RESERVED

from .agents import Registry
from .primitive_catalog import PrimitiveInfo, primitive_catalog
from .prism_text import IDENTIFIER, comment_text, prism_key, prism_literal, prism_number, prism_string
from .requirements import OrchestrationRequirements

__all__ = [
    "FAILURE_FLOOR", "INTERNAL_NAMES", "LIMITS", "NODE_KINDS", "PLAN_EXAMPLE", "Plan", "PlanError",
    "PrimitiveInfo", "Rendered", "comment_text", "parse_plan", "plan_json_schema", "primitive_catalog",
    "prism_literal", "prism_number", "prism_string", "render_plan", "validate_plan",
]

# ---------------------------------------------------------------- limits

LIMITS = {
    "max_depth": 8,          # nesting of nodes below a step
    "max_nodes": 200,        # nodes in the whole plan
    "max_steps": 20,
    "max_items": 32,         # items in one list / args of one call
    "max_text": 2000,        # characters of one task text / rationale
    "max_literal": 4000,     # characters of one literal's JSON / one options object
    "max_json_depth": 40,    # nesting of the raw JSON answer (checked before pydantic)
}

# Names the rendered pattern defines itself; steps may not take them.
INTERNAL_NAMES = frozenset({"goal", "taskText", "minConfidence", "outcome", "result", "escalated",
                            "passed", "previous", "chained", "agents", "input",
                            "requirements", "select_agents"})
FAILURE_FLOOR = 0.3
"""Without a minConfidence, the fallback branch runs when the outcome's confidence is at or
below this floor (the primitives' own failure convention)."""

_AGENT_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,99}$")


class PlanError(ValueError):
    """A plan that cannot be used; ``errors`` lists every problem found."""

    def __init__(self, errors: list[str]):
        self.errors = list(errors)
        head = "; ".join(self.errors[:5]) + (f" (and {len(self.errors) - 5} more)" if len(self.errors) > 5 else "")
        super().__init__(f"invalid plan: {head}")


# ---------------------------------------------------------------- the plan models

class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputNode(_Strict):
    """The pattern's input data (the ``input`` binding)."""
    kind: Literal["input"]


class PreviousNode(_Strict):
    """What a primitive hands a task it runs (sequential's previous result, an escalation
    context, a batch item …); only as the data of an agent call in a task position."""
    kind: Literal["previous"]


class LiteralNode(_Strict):
    """Any JSON value."""
    kind: Literal["literal"]
    value: Any = None


class RefNode(_Strict):
    """The value of an earlier step."""
    kind: Literal["ref"]
    step: str


class ListNode(_Strict):
    kind: Literal["list"]
    items: list[Node] = Field(default_factory=list)


class ObjectNode(_Strict):
    """An object whose fields are nodes (e.g. {"medium": task, "low": task})."""
    kind: Literal["object"]
    fields: dict[str, Node] = Field(default_factory=dict)


class AgentNode(_Strict):
    """One call of one registered agent: ``agents[agent].analyze(task, data)``."""
    kind: Literal["agent"]
    agent: str
    task: str | None = None
    data: Node = Field(default_factory=lambda: InputNode(kind="input"))

    @field_validator("data", mode="before")
    @classmethod
    def _data_shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            shorthand = {"input": {"kind": "input"}, "previous": {"kind": "previous"},
                         "none": {"kind": "literal", "value": None}, "null": {"kind": "literal", "value": None}}
            if value not in shorthand:
                raise ValueError('must be "input", "previous", "none" or a node object')
            return shorthand[value]
        if value is None:
            return {"kind": "literal", "value": None}
        return value


class CallNode(_Strict):
    """A call of one primitive: positional ``args`` then the ``options`` object."""
    kind: Literal["call"]
    primitive: str
    args: list[Node] = Field(default_factory=list)
    options: dict[str, Any] = Field(default_factory=dict)


Node = Annotated[Union[InputNode, PreviousNode, LiteralNode, RefNode, ListNode, ObjectNode, AgentNode, CallNode],
                 Field(discriminator="kind")]
NODE_KINDS = ("call", "agent", "list", "object", "ref", "input", "previous", "literal")
for _model in (ListNode, ObjectNode, AgentNode, CallNode):
    _model.model_rebuild()


class Step(_Strict):
    name: str
    expr: Node


class FallbackSpec(_Strict):
    agent: str
    task: str | None = None


class Plan(_Strict):
    """A composition plan. Exactly one of ``steps`` and ``root``."""
    strategy: str
    rationale: str = ""
    steps: list[Step] | None = None
    root: Node | None = None
    output: str | None = None
    minConfidence: float | None = None
    fallback: FallbackSpec | None = None

    def step_list(self) -> list[Step]:
        if self.steps is not None:
            return list(self.steps)
        return [Step(name="composed", expr=self.root)] if self.root is not None else []

    def output_name(self) -> str:
        steps = self.step_list()
        return self.output or (steps[-1].name if steps else "composed")


PLAN_EXAMPLE: dict[str, Any] = {
    "strategy": "consensus",
    "rationale": "Three reviewers answer in parallel; a confidence-weighted consensus combines them.",
    "steps": [
        {"name": "reviews", "expr": {"kind": "call", "primitive": "parallel", "args": [
            {"kind": "list", "items": [
                {"kind": "agent", "agent": "security", "task": "Review the change for security issues",
                 "data": "input"},
                {"kind": "agent", "agent": "quality", "data": "input"}]}],
            "options": {"maxConcurrency": 2}}},
        {"name": "agreed", "expr": {"kind": "call", "primitive": "consensus",
                                    "args": [{"kind": "ref", "step": "reviews"}], "options": {"threshold": 0.3}}},
    ],
    "output": "agreed",
    "minConfidence": 0.8,
    "fallback": {"agent": "senior-architect"},
}


def plan_json_schema() -> dict[str, Any]:
    """The JSON schema of `Plan` (given to the model)."""
    return Plan.model_json_schema()


# ---------------------------------------------------------------- parsing

def _json_depth_ok(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        cur, depth = stack.pop()
        if depth > limit:
            return False
        if isinstance(cur, dict):
            stack.extend((v, depth + 1) for v in cur.values())
        elif isinstance(cur, list):
            stack.extend((v, depth + 1) for v in cur)
    return True


def _loc(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif item in NODE_KINDS or item.startswith("function-"):
            continue  # discriminator tags and validator names add nothing for the reader
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "(plan)"


def _pydantic_errors(exc: ValidationError) -> list[str]:
    out: list[str] = []
    for err in exc.errors(include_url=False):
        where = _loc(tuple(err.get("loc", ())))
        kind = err.get("type")
        if kind == "union_tag_not_found":
            out.append(f'{where}: missing "kind" (one of: {", ".join(NODE_KINDS)})')
        elif kind == "union_tag_invalid":
            tag = (err.get("ctx") or {}).get("tag")
            out.append(f'{where}: unknown kind {tag!r} (one of: {", ".join(NODE_KINDS)})')
        elif kind == "extra_forbidden":
            out.append(f"{where}: unknown field")
        elif kind == "missing":
            out.append(f"{where}: required field is missing")
        else:
            msg = str(err.get("msg", "is invalid")).removeprefix("Value error, ")
            out.append(f"{where}: {msg}")
    return out


def parse_plan(data: Any) -> Plan:
    """Decoded JSON → `Plan`; structural problems raise `PlanError` with one line each."""
    if not isinstance(data, dict):
        raise PlanError([f"the plan must be a JSON object, got {type(data).__name__}"])
    if not _json_depth_ok(data, LIMITS["max_json_depth"]):
        raise PlanError([f"the plan is nested more than {LIMITS['max_json_depth']} levels deep"])
    try:
        return Plan.model_validate(data)
    except ValidationError as exc:
        raise PlanError(_pydantic_errors(exc)) from None
    except RecursionError:
        raise PlanError(["the plan is nested too deeply"]) from None


# ---------------------------------------------------------------- validation

@dataclass
class _Walk:
    catalog: dict[str, PrimitiveInfo]
    registry: Registry | None            # None: agent ids are not checked against a registry
    errors: list[str] = field(default_factory=list)
    nodes: int = 0
    primitives: list[str] = field(default_factory=list)
    agents: list[str] = field(default_factory=list)

    def error(self, where: str, message: str) -> None:
        if len(self.errors) < 50:
            self.errors.append(f"{where}: {message}")


def _close(name: str, options: list[str]) -> str:
    found = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
    return f" (did you mean {found[0]!r}?)" if found else ""


def _check_text(w: _Walk, where: str, text: str | None) -> None:
    if text is not None and len(text) > LIMITS["max_text"]:
        w.error(where, f"text is longer than {LIMITS['max_text']} characters")


def _check_json(w: _Walk, where: str, value: Any) -> None:
    try:
        encoded = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        w.error(where, "must be JSON data with finite numbers")
        return
    if len(encoded) > LIMITS["max_literal"]:
        w.error(where, f"is longer than {LIMITS['max_literal']} characters of JSON")


def _walk(w: _Walk, node: Any, where: str, depth: int, mode: str, known_steps: set[str]) -> None:
    w.nodes += 1
    if depth > LIMITS["max_depth"]:
        w.error(where, f"nested deeper than {LIMITS['max_depth']} levels")
        return
    if isinstance(node, PreviousNode):
        w.error(where, '"previous" is only allowed as the data of an agent call in a chained task '
                       "(e.g. the steps of sequential or pipeline)")
    elif isinstance(node, LiteralNode):
        _check_json(w, where + ".value", node.value)
    elif isinstance(node, RefNode):
        if node.step not in known_steps:
            w.error(where, f"refers to step {node.step!r}, which is not an earlier step"
                    + _close(node.step, sorted(known_steps)))
    elif isinstance(node, ListNode):
        if len(node.items) > LIMITS["max_items"]:
            w.error(where, f"has more than {LIMITS['max_items']} items")
        item_mode = "task" if mode == "tasks" else "value"
        for i, item in enumerate(node.items[: LIMITS["max_items"]]):
            _walk(w, item, f"{where}.items[{i}]", depth + 1, item_mode, known_steps)
    elif isinstance(node, ObjectNode):
        if len(node.fields) > LIMITS["max_items"]:
            w.error(where, f"has more than {LIMITS['max_items']} fields")
        # an object of tasks ({medium, low}), or a task-like object ({name, action, compensate})
        item_mode = "task" if mode in ("tasks", "task") else "value"
        for key, item in list(node.fields.items())[: LIMITS["max_items"]]:
            if not key or len(key) > 60:
                w.error(where + ".fields", "field names must have 1 to 60 characters")
            _walk(w, item, f"{where}.fields.{comment_text(key, 60)}", depth + 1, item_mode, known_steps)
    elif isinstance(node, AgentNode):
        _walk_agent(w, node, where, depth, mode, known_steps)
    elif isinstance(node, CallNode):
        _walk_call(w, node, where, depth, known_steps)


def _walk_agent(w: _Walk, node: AgentNode, where: str, depth: int, mode: str, known: set[str]) -> None:
    if not _AGENT_ID.match(node.agent):
        w.error(where + ".agent", f"{comment_text(node.agent, 60)!r} is not an agent id")
    elif w.registry is not None and node.agent not in w.registry:
        w.error(where + ".agent", f"unknown agent {node.agent!r}" + _known(node.agent, w.registry))
    elif node.agent not in w.agents:
        w.agents.append(node.agent)
    _check_text(w, where + ".task", node.task)
    if isinstance(node.data, PreviousNode):
        if mode != "task":
            w.error(where + ".data", '"previous" needs a task position (an item of sequential/pipeline steps); '
                                     "here the call runs once, with no previous result")
        w.nodes += 1
    else:
        _walk(w, node.data, where + ".data", depth + 1, "value", known)


def _walk_call(w: _Walk, node: CallNode, where: str, depth: int, known: set[str]) -> None:
    info = w.catalog.get(node.primitive)
    if info is None:
        w.error(where + ".primitive", f"unknown primitive {node.primitive!r}"
                + (_close(node.primitive, sorted(w.catalog)) or f"; available: {', '.join(sorted(w.catalog))}"))
    elif node.primitive not in w.primitives:
        w.primitives.append(node.primitive)
    if len(node.args) > LIMITS["max_items"]:
        w.error(where + ".args", f"has more than {LIMITS['max_items']} arguments")
    if info is not None:
        limit = info.positional
        if limit is not None and len(node.args) > limit:
            w.error(where + ".args", f"{info.signature} takes at most {limit} positional "
                                     f"argument(s) before the options, got {len(node.args)}")
        if node.options and not info.takes_options:
            w.error(where + ".options", f"{info.signature} takes no options object")
    for key in node.options:
        if not IDENTIFIER.match(key) or key in RESERVED:
            w.error(where + ".options", f"option name {key!r} is not a plain identifier")
    if node.options:
        _check_json(w, where + ".options", node.options)
    for i, arg in enumerate(node.args[: LIMITS["max_items"]]):
        mode = info.mode(i) if info is not None else "value"
        if mode == "function":
            w.error(f"{where}.args[{i}]", f"{info.signature}: parameter {info.positional_names[i]!r} is a "
                    "function, which a plan cannot express; choose another primitive")
            continue
        if mode == "task" and isinstance(arg, ListNode):
            w.error(f"{where}.args[{i}]", f"{node.primitive} expects one task here, not a list")
        _walk(w, arg, f"{where}.args[{i}]", depth + 1, mode, known)


def _known(name: str, registry: Registry) -> str:
    return _close(name, registry.ids()) or f"; the registry has: {', '.join(registry.ids()) or 'no agents'}"


def validate_plan(plan: Plan, requirements: OrchestrationRequirements, registry: Registry | None,
                  catalog: dict[str, PrimitiveInfo] | None = None) -> list[str]:
    """Every semantic problem of a structurally valid plan, as lines for the model.

    With ``registry=None`` agent ids are only checked for their form (used by
    `render_plan`, which never renders a plan with a problem)."""
    catalog = primitive_catalog() if catalog is None else catalog
    w = _Walk(catalog, registry)
    steps = plan.step_list()
    if plan.steps is not None and plan.root is not None:
        w.error("(plan)", 'give either "steps" or "root", not both')
    if not steps:
        w.error("(plan)", 'give "steps" (a non-empty list) or "root"')
    if len(steps) > LIMITS["max_steps"]:
        w.error("steps", f"more than {LIMITS['max_steps']} steps")
    if not plan.strategy.strip() or len(plan.strategy) > 60:
        w.error("strategy", "must be a short name such as \"consensus\" (1 to 60 characters)")
    _check_text(w, "rationale", plan.rationale)
    known: set[str] = set()
    for i, step in enumerate(steps[: LIMITS["max_steps"]]):
        where = f"steps[{i}]" if plan.steps is not None else "root"
        _check_step_name(w, step.name, where, known, catalog)
        _walk(w, step.expr, where + ".expr" if plan.steps is not None else where, 1, "value", known)
        known.add(step.name)
    if plan.output is not None and plan.output not in known:
        w.error("output", f"names no step: {plan.output!r}" + _close(plan.output, sorted(known)))
    if w.nodes > LIMITS["max_nodes"]:
        w.error("(plan)", f"has {w.nodes} nodes; the limit is {LIMITS['max_nodes']}")
    if steps and not w.agents and not w.errors:
        w.error("(plan)", "calls no agent: use agent nodes so the pattern asks the registry's agents")
    _check_gate(w, plan, requirements, registry)
    return w.errors


def _check_step_name(w: _Walk, name: str, where: str, known: set[str], catalog: dict[str, PrimitiveInfo]) -> None:
    if not IDENTIFIER.match(name):
        w.error(where + ".name", f"{name!r} is not an identifier (letters, digits, '_'; a letter first; ≤ 40)")
    elif name in RESERVED or name in INTERNAL_NAMES or name in GLOBAL_NAMES or name in catalog:
        w.error(where + ".name", f"{name!r} is reserved or already used by the pattern; choose another name")
    elif name in known:
        w.error(where + ".name", f"duplicate step name {name!r}")


def _check_gate(w: _Walk, plan: Plan, req: OrchestrationRequirements, registry: Registry | None) -> None:
    mc = plan.minConfidence
    if mc is not None and not (math.isfinite(mc) and 0.0 <= mc <= 1.0):
        w.error("minConfidence", "must be a number between 0 and 1")
    elif mc is not None and req.min_confidence is not None and abs(mc - req.min_confidence) > 1e-9:
        w.error("minConfidence", f"must be {req.min_confidence} as the requirements say (got {mc})")
    if plan.fallback is not None:
        agent = plan.fallback.agent
        if not _AGENT_ID.match(agent):
            w.error("fallback.agent", f"{comment_text(agent, 60)!r} is not an agent id")
        elif registry is not None and agent not in registry:
            w.error("fallback.agent", f"unknown agent {agent!r}" + _known(agent, registry))
        _check_text(w, "fallback.task", plan.fallback.task)
    elif req.fallback is not None:
        w.error("fallback", f"the requirements ask for a fallback ({comment_text(req.fallback, 80)!r}): set "
                            '"fallback": {"agent": "<id>"} to the registered agent that should take over '
                            f"(agents: {', '.join(registry.ids()) if registry is not None else '…'})")


# ---------------------------------------------------------------- rendering

@dataclass(frozen=True)
class Rendered:
    source: str
    primitives: list[str]
    agents: list[str]
    fallback_agent: str | None
    min_confidence: float | None
    strategy: str


_WIDTH = 96


def _seq(items: list[str], open_: str, close: str, ind: str) -> str:
    """``[a, b]`` on one line when short, else one item per line indented under ``ind``."""
    inline = open_ + ", ".join(items) + close
    if len(ind) + len(inline) <= _WIDTH and "\n" not in inline:
        return inline
    inner = ind + "  "
    return open_ + "\n" + ",\n".join(inner + item for item in items) + "\n" + ind + close


class _Renderer:
    """Node → expression text; ``ind`` is the indentation of the line the text starts on."""

    def __init__(self, catalog: dict[str, PrimitiveInfo]):
        self.catalog = catalog
        self.uses_chained = False

    def value(self, node: Any, ind: str = "") -> str:
        """An expression for the node's value (calls awaited)."""
        if isinstance(node, InputNode):
            return "input"
        if isinstance(node, LiteralNode):
            return prism_literal(node.value)
        if isinstance(node, RefNode):
            return node.step
        if isinstance(node, ListNode):
            inner = ind + "  "
            if any(isinstance(i, AgentNode | CallNode) for i in node.items):
                # started together, awaited together: the calls overlap
                return "await Promise.all(" + _seq([self.promise(i, inner) for i in node.items], "[", "]", ind) + ")"
            return _seq([self.value(i, inner) for i in node.items], "[", "]", ind)
        if isinstance(node, ObjectNode):
            inner = ind + "  "
            return _seq([f"{prism_key(k)}: {self.value(v, inner)}" for k, v in node.fields.items()], "{", "}", ind)
        if isinstance(node, AgentNode | CallNode):
            return "await " + self.promise(node, ind)
        raise ValueError(f"cannot render {type(node).__name__} as a value")

    def promise(self, node: Any, ind: str) -> str:
        """Like `value`, but calls are left un-awaited (started, to be awaited together)."""
        if isinstance(node, AgentNode):
            return self.agent_call(node, ind)
        if isinstance(node, CallNode):
            return self.call(node, ind)
        return self.value(node, ind)

    def task(self, node: Any, ind: str) -> str:
        """An expression usable as a task: an agent-call descriptor (started and cancelled by
        the primitive), a thunk for chained agent calls and nested calls, the value otherwise."""
        if isinstance(node, AgentNode):
            if isinstance(node.data, PreviousNode):
                self.uses_chained = True
                task = prism_string(node.task) if node.task is not None else "taskText"
                return f"chained({prism_string(node.agent)}, {task})"
            task = prism_string(node.task) if node.task is not None else "taskText"
            return (f"{{agent: agents[{prism_string(node.agent)}], task: {task}, "
                    f"data: {self.value(node.data, ind + '  ')}}}")
        if isinstance(node, CallNode):
            return "() => " + self.call(node, ind)
        if isinstance(node, ObjectNode):  # e.g. a saga step {name, action, compensate}
            inner = ind + "  "
            return _seq([f"{prism_key(k)}: {self.task(v, inner)}" for k, v in node.fields.items()], "{", "}", ind)
        return self.value(node, ind)

    def agent_call(self, node: AgentNode, ind: str) -> str:
        task = prism_string(node.task) if node.task is not None else "taskText"
        return f"agents[{prism_string(node.agent)}].analyze({task}, {self.value(node.data, ind + '  ')})"

    def arg(self, node: Any, mode: str, ind: str) -> str:
        inner = ind + "  "
        if mode == "task":
            return self.task(node, ind)
        if mode == "tasks" and isinstance(node, ListNode):
            return _seq([self.task(i, inner) for i in node.items], "[", "]", ind)
        if mode == "tasks" and isinstance(node, ObjectNode):
            return _seq([f"{prism_key(k)}: {self.task(v, inner)}" for k, v in node.fields.items()], "{", "}", ind)
        return self.value(node, ind)

    def call(self, node: CallNode, ind: str) -> str:
        info = self.catalog[node.primitive]
        args = [self.arg(a, info.mode(i), ind) for i, a in enumerate(node.args)]
        if node.options:
            args.append(prism_literal(node.options))
        return f"{node.primitive}({', '.join(args)})"


def _imports(primitives: list[str], catalog: dict[str, PrimitiveInfo]) -> list[str]:
    by_module: dict[str, list[str]] = {}
    for name in primitives:
        by_module.setdefault(catalog[name].module, []).append(name)
    return [f"import {{ {', '.join(sorted(names))} }} from {prism_string(module)}"
            for module, names in sorted(by_module.items())]


def render_plan(plan: Plan, requirements: OrchestrationRequirements, *,
                catalog: dict[str, PrimitiveInfo] | None = None, composer: str = "llm",
                registry: Registry | None = None) -> Rendered:
    """Readable Prism for a plan (deterministic). The plan is validated first (agent ids
    against ``registry`` when given); any problem raises `PlanError`."""
    catalog = primitive_catalog() if catalog is None else catalog
    problems = validate_plan(plan, requirements, registry, catalog)
    if problems:  # names reach the source as identifiers: never render an unchecked plan
        raise PlanError(problems)
    r = _Renderer(catalog)
    steps = plan.step_list()
    walk = _Walk(catalog, registry)
    for step in steps:
        _collect(walk, step.expr)
    primitives, agents = walk.primitives, walk.agents
    strategy = requirements.strategy or plan.strategy.strip()
    min_conf = requirements.min_confidence if requirements.min_confidence is not None else plan.minConfidence
    fb = plan.fallback.agent if plan.fallback is not None else None

    body: list[str] = []
    for i, step in enumerate(steps):
        what = step.expr.primitive if isinstance(step.expr, CallNode) else step.expr.kind
        body.append(f"// step {i + 1}: {step.name} ({what})")
        body.append(f"let {step.name} = {r.value(step.expr)}")
    out = plan.output_name()

    lines = [
        f"// Pattern composed by the {comment_text(composer, 60)} composer from a validated plan",
        f"// Goal: {comment_text(requirements.goal)}",
        f"// Strategy: {comment_text(strategy, 80)}",
        f"// Primitives: {', '.join(primitives) or 'none'}",
        f"// Agents: {', '.join(agents)}" + (f"; fallback: {fb}" if fb else ""),
    ]
    lines += _rationale_lines(plan.rationale)
    lines += ["//", "// Needs the bindings `agents` (id -> agent) and `input`; run it with",
              "//   prism run THIS.prism --agents agents.toml --input @input.json"]
    lines += _imports(primitives, catalog)
    lines += ["", f"const goal = {prism_string(requirements.goal)}",
              "let taskText = input?.task ?? goal"]
    if min_conf is not None:
        lines.append(f"const minConfidence = {prism_number(min_conf)}")
    elif fb is not None:
        lines.append(f"const minConfidence = {prism_number(FAILURE_FLOOR)}  "
                     "// no minConfidence given: fall back only when the outcome failed")
    if r.uses_chained:
        lines += ["", "// a task that receives what the primitive passes it (the previous result) and asks an agent",
                  "function chained(agentId, task) {",
                  "  return (...received) => agents[agentId].analyze(task,",
                  "    {input: input, previous: received.length > 0 ? received[0] : null})",
                  "}"]
    lines += [""] + body + ["", f"let outcome = {out}"]
    lines += _gate_lines(strategy, agents, min_conf, fb, plan.fallback.task if plan.fallback else None)
    return Rendered("\n".join(lines) + "\n", primitives, agents, fb, min_conf, strategy)


def _collect(w: _Walk, node: Any) -> None:
    if isinstance(node, CallNode):
        if node.primitive not in w.primitives:
            w.primitives.append(node.primitive)
        for a in node.args:
            _collect(w, a)
    elif isinstance(node, AgentNode):
        if node.agent not in w.agents:
            w.agents.append(node.agent)
        _collect(w, node.data)
    elif isinstance(node, ListNode):
        for item in node.items:
            _collect(w, item)
    elif isinstance(node, ObjectNode):
        for item in node.fields.values():
            _collect(w, item)


def _rationale_lines(text: str) -> list[str]:
    one = comment_text(text, 600)
    if not one:
        return []
    out, line = [], "// Rationale:"
    for word in one.split(" "):
        if len(line) + len(word) > 96:
            out.append(line)
            line = "//  "
        line += " " + word
    out.append(line)
    return out[:8]


def _gate_lines(strategy: str, agents: list[str], min_conf: float | None, fb: str | None,
                fb_task: str | None) -> list[str]:
    strat = prism_string(strategy)
    ids = "[" + ", ".join(prism_string(a) for a in agents) + "]"
    if fb is not None:
        task = prism_string(fb_task) if fb_task else '"Escalated: " + taskText'
        gate = "below minConfidence" if min_conf is not None else "when the outcome failed"
        return [
            f"// the gate: {gate}, the fallback agent takes over",
            "let result",
            "if ((<~ outcome) " + (">=" if min_conf is not None else ">") + " minConfidence) {",
            f"  result = {{answer: outcome, fallbackTaken: false, strategy: {strat},",
            f"            details: {{agents: {ids}, belowMinimum: false}}}} ~> (<~ outcome)",
            "} else {",
            f"  let escalated = await agents[{prism_string(fb)}].analyze({task}, {{input: input,",
            '    reason: "confidence " + (<~ outcome).toFixed(3) + " is below " + minConfidence, earlier: outcome})',
            f"  result = {{answer: escalated.value, fallbackTaken: true, strategy: {strat},",
            f"            details: {{agents: {ids}, escalatedTo: {prism_string(fb)}, belowMinimum: true,",
            "                      outcomeConfidence: <~ outcome, earlier: outcome}} ~> (<~ escalated)",
            "}",
            "result",
        ]
    if min_conf is not None:
        return [
            "// the gate: below minConfidence the answer is returned marked as below the minimum",
            "let passed = (<~ outcome) >= minConfidence",
            f"{{answer: outcome, fallbackTaken: false, strategy: {strat},",
            f" details: {{agents: {ids}, belowMinimum: !passed}}}} ~> (<~ outcome)",
        ]
    return [f"{{answer: outcome, fallbackTaken: false, strategy: {strat},",
            f" details: {{agents: {ids}}}}} ~> (<~ outcome)"]
