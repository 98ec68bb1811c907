"""The agent registry: reads an agents TOML file and selects agents by capability.

Consumes a TOML file (`[agents.<id>]`, `[llm]`, `[llm.providers.<name>]`,
`[composer]`) and produces a `Registry`; every problem becomes a `RegistryError`.

Selection rule (`Registry.select`): an agent *matches* when it declares at least one
of the requested capabilities (an empty request matches every agent). Matches are
ordered by the number of requested capabilities they have (most first), then by
expertise (highest first), then by id, and truncated to `max_agents`.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from .models import AgentSpec, AgentSpecError, LLMProviderSpec

__all__ = ["Registry", "RegistryError", "SelectionError", "UnknownAgentError", "load_registry"]

_TOP_LEVEL = ("agents", "llm", "composer")
_Fail = Callable[..., "RegistryError"]
_LLM_KEYS = ("default", "providers")


class RegistryError(Exception):
    """The agents file cannot be read or is invalid. Carries the path and, when known, line/column."""

    def __init__(self, message: str, *, path: Path | str | None = None, line: int | None = None,
                 column: int | None = None) -> None:
        self.message = message
        self.path = Path(path) if path is not None else None
        self.line = line
        self.column = column
        where = str(self.path) if self.path is not None else "<agents>"
        if line is not None:
            where += f":{line}" + (f":{column}" if column is not None else "")
        super().__init__(f"{where}: {message}")


class UnknownAgentError(LookupError):
    """No agent has the requested id; `suggestions` holds close ids."""

    def __init__(self, agent_id: str, known: Sequence[str]) -> None:
        self.agent_id = agent_id
        self.suggestions = difflib.get_close_matches(agent_id, list(known), n=3, cutoff=0.5)
        message = f"unknown agent '{agent_id}'"
        if self.suggestions:
            message += " (did you mean " + " or ".join(f"'{s}'" for s in self.suggestions) + "?)"
        elif known:
            message += f"; known agents: {', '.join(known)}"
        else:
            message += "; no agents are configured"
        super().__init__(message)


class SelectionError(LookupError):
    """Fewer agents match a capability request than required."""


class Registry:
    """Agents (in declaration order), LLM providers and the raw composer configuration."""

    def __init__(self, agents: Sequence[AgentSpec] = (), *, llm_providers: Sequence[LLMProviderSpec] = (),
                 default_llm_provider: str | None = None, composer_config: Mapping[str, Any] | None = None,
                 path: Path | None = None) -> None:
        self.agents: dict[str, AgentSpec] = {}
        for spec in agents:
            if spec.id in self.agents:
                raise ValueError(f"duplicate agent id '{spec.id}'")
            self.agents[spec.id] = spec
        self.llm_providers: dict[str, LLMProviderSpec] = {p.name: p for p in llm_providers}
        if default_llm_provider is not None and default_llm_provider not in self.llm_providers:
            raise ValueError(f"default LLM provider '{default_llm_provider}' is not declared")
        self.default_llm_provider = default_llm_provider
        self.composer_config: dict[str, Any] = dict(composer_config or {})
        self.path = path

    def __len__(self) -> int:
        return len(self.agents)

    def __iter__(self) -> Iterator[AgentSpec]:
        return iter(self.agents.values())

    def __contains__(self, agent_id: object) -> bool:
        return agent_id in self.agents

    def __repr__(self) -> str:
        return f"Registry({len(self.agents)} agents, {len(self.llm_providers)} LLM providers, path={self.path})"

    def ids(self) -> list[str]:
        return list(self.agents)

    def capabilities(self) -> list[str]:
        """Every capability some agent declares, sorted."""
        return sorted({c for spec in self.agents.values() for c in spec.capabilities})

    def get(self, agent_id: str) -> AgentSpec:
        """The agent with this id; `UnknownAgentError` (with close-name suggestions) otherwise."""
        try:
            return self.agents[agent_id]
        except KeyError:
            raise UnknownAgentError(agent_id, self.ids()) from None

    def select(self, capabilities: Sequence[str], min_agents: int = 1,
               max_agents: int | None = None) -> list[AgentSpec]:
        """Agents having any of `capabilities`, best first (see the module docstring).

        Raises `SelectionError` when fewer than `min_agents` match, `ValueError` for
        malformed arguments.
        """
        if isinstance(capabilities, str) or not all(isinstance(c, str) for c in capabilities):
            raise ValueError(f"capabilities must be a list of strings, got {capabilities!r}")
        if min_agents < 0 or (max_agents is not None and max_agents < max(min_agents, 1)):
            raise ValueError(f"invalid bounds: min_agents={min_agents}, max_agents={max_agents}")
        wanted = set(capabilities)

        def matched(spec: AgentSpec) -> int:
            return len(wanted.intersection(spec.capabilities))

        candidates = [s for s in self.agents.values() if not wanted or matched(s) > 0]
        candidates.sort(key=lambda s: (-matched(s), -s.expertise, s.id))
        if len(candidates) < min_agents:
            raise SelectionError(self._selection_message(list(capabilities), min_agents, candidates))
        return candidates if max_agents is None else candidates[:max_agents]

    def _selection_message(self, capabilities: list[str], min_agents: int, found: list[AgentSpec]) -> str:
        noun = "agent" if min_agents == 1 else "agents"
        message = (f"not enough agents: need at least {min_agents} {noun} with any of the capabilities "
                   f"{capabilities}, found {len(found)}")
        if found:
            message += " (" + ", ".join(s.id for s in found) + ")"
        unknown = [c for c in capabilities if c not in self.capabilities()]
        for cap in unknown:
            close = difflib.get_close_matches(cap, self.capabilities(), n=1)
            message += f"; no agent declares '{cap}'" + (f" (did you mean '{close[0]}'?)" if close else "")
        if self.agents:
            listing = "; ".join(f"{s.id} [{', '.join(s.capabilities)}]" for s in self.agents.values())
            message += f". Available agents: {listing}"
        else:
            message += ". No agents are configured"
        return message

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, path: Path | None = None,
                  text: str | None = None) -> Registry:
        """Build a registry from parsed TOML data. `path` and `text` only improve error messages."""
        base_dir = path.parent.resolve() if path is not None else None

        def fail(message: str, header: Sequence[str] = ()) -> RegistryError:
            line = _table_line(text, header) if text and header else None
            return RegistryError(message, path=path, line=line)

        for key in data:
            if key not in _TOP_LEVEL:
                close = difflib.get_close_matches(key, _TOP_LEVEL, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else f" (expected: {', '.join(_TOP_LEVEL)})"
                raise fail(f"unknown top-level key '{key}'{hint}")

        agents_table = _table(data, "agents", fail)
        agents = []
        for agent_id, table in agents_table.items():
            try:
                agents.append(AgentSpec.from_config(agent_id, table, base_dir=base_dir))
            except AgentSpecError as exc:
                raise fail(str(exc), ("agents", agent_id)) from None

        providers, default = _load_llm(data, fail)
        composer = _table(data, "composer", fail)
        return cls(agents, llm_providers=providers, default_llm_provider=default,
                   composer_config=composer, path=path)


def _table(data: Mapping[str, Any], key: str, fail: _Fail) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, Mapping):
        raise fail(f"'{key}' must be a table, got {type(value).__name__}")
    return dict(value)


def _load_llm(data: Mapping[str, Any], fail: _Fail) -> tuple[list[LLMProviderSpec], str | None]:
    llm = _table(data, "llm", fail)
    for key in llm:
        if key not in _LLM_KEYS:
            raise fail(f"unknown key 'llm.{key}' (expected: default, providers)", ("llm",))
    providers = []
    for name, table in _table(llm, "providers", fail).items():
        try:
            providers.append(LLMProviderSpec.from_config(name, table))
        except AgentSpecError as exc:
            raise fail(str(exc), ("llm", "providers", name)) from None

    names = [p.name for p in providers]
    flagged = [p.name for p in providers if p.default]
    default = llm.get("default")
    if default is not None and not isinstance(default, str):
        raise fail(f"'llm.default' must be a provider name, got {default!r}", ("llm",))
    if len(flagged) > 1:
        raise fail(f"more than one LLM provider has default = true: {', '.join(flagged)}")
    if default is not None:
        if default not in names:
            close = difflib.get_close_matches(default, names, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f" (declared: {', '.join(names) or 'none'})"
            raise fail(f"'llm.default' names an unknown provider '{default}'{hint}", ("llm",))
        if flagged and flagged[0] != default:
            raise fail(f"'llm.default' is '{default}' but provider '{flagged[0]}' has default = true", ("llm",))
    elif flagged:
        default = flagged[0]
    elif len(providers) == 1:
        default = providers[0].name  # a single provider is the default
    return providers, default


def _table_line(text: str, header: Sequence[str]) -> int | None:
    """Best-effort line of `[a.b.c]` in the TOML text (tomllib reports no positions for values)."""
    parts = [rf"[ \t]*(?:{re.escape(p)}|\"{re.escape(p)}\"|'{re.escape(p)}')[ \t]*" for p in header]
    pattern = re.compile(r"^[ \t]*\[" + r"\.".join(parts) + r"\]", re.MULTILINE)
    match = pattern.search(text)
    return text.count("\n", 0, match.start()) + 1 if match else None


_TOML_POSITION = re.compile(r"\(at line (\d+), column (\d+)\)$")


def load_registry(path: str | Path) -> Registry:
    """Read and validate an agents TOML file. Raises `RegistryError` with the file path."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RegistryError("agents file not found", path=path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RegistryError(f"cannot read agents file: {exc}", path=path) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        position = _TOML_POSITION.search(message)
        if position:
            raise RegistryError(f"invalid TOML: {message[:position.start()].rstrip()}", path=path,
                                line=int(position.group(1)), column=int(position.group(2))) from None
        raise RegistryError(f"invalid TOML: {message}", path=path) from None
    return Registry.from_dict(data, path=path, text=text)
