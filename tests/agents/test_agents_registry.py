"""Loading agents TOML files, their error messages, lookup and capability selection."""

from __future__ import annotations

from pathlib import Path

import pytest

from bootstrap.agents.registry import (
    Registry,
    RegistryError,
    SelectionError,
    UnknownAgentError,
    load_registry,
)

FULL = """\
[agents.security]
capabilities = ["security", "code-analysis"]
transport = "http"
url = "http://127.0.0.1:8801/analyze"
timeout = 10

[agents.quality]
capabilities = ["quality", "code-analysis"]
expertise = 0.9
transport = "python"
target = "agents:quality"

[agents.writer]
capabilities = ["writing"]
transport = "llm"
base_url = "http://127.0.0.1:8000/v1"
model = "some-model"
api_key_env = "OPENAI_API_KEY"
system = "You write release notes."

[agents.sim-1]
capabilities = ["security"]
transport = "simulated"
seed = 1
accuracy = 0.9

[llm]
default = "local"

[llm.providers.local]
base_url = "http://127.0.0.1:8000/v1"
model = "some-model"

[llm.providers.offline]
type = "mock"
response = "canned"

[composer]
kind = "builtin"
max_repairs = 3
"""


def write(tmp_path: Path, text: str, name: str = "agents.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_full_file(tmp_path: Path) -> None:
    registry = load_registry(write(tmp_path, FULL))
    assert registry.ids() == ["security", "quality", "writer", "sim-1"]
    security = registry.get("security")
    assert security.transport == "http" and security.timeout == 10 and security.expertise == 0.7
    assert registry.get("quality").base_dir == str(tmp_path.resolve())
    assert registry.get("writer").api_key_env == "OPENAI_API_KEY"
    assert registry.get("sim-1").seed == 1
    assert registry.default_llm_provider == "local"
    assert set(registry.llm_providers) == {"local", "offline"}
    assert registry.llm_providers["offline"].type == "mock"
    assert registry.composer_config == {"kind": "builtin", "max_repairs": 3}
    assert registry.capabilities() == ["code-analysis", "quality", "security", "writing"]
    assert len(registry) == 4 and "writer" in registry and registry.path == tmp_path / "agents.toml"


def test_empty_file_is_an_empty_registry(tmp_path: Path) -> None:
    registry = load_registry(write(tmp_path, ""))
    assert len(registry) == 0 and registry.default_llm_provider is None and registry.composer_config == {}


def test_syntax_error_has_path_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, '[agents.a]\ntransport = "simulated"\ncapabilities = [\n  "x",\n  oops\n]\n')
    with pytest.raises(RegistryError) as info:
        load_registry(path)
    err = info.value
    assert err.path == path and err.line == 5 and err.column is not None
    assert str(err).startswith(f"{path}:5:")
    assert "invalid TOML" in str(err)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="agents file not found"):
        load_registry(tmp_path / "nope.toml")


@pytest.mark.parametrize(("text", "line", "fragment"), [
    ('[agents.a]\ntransport = "simulated"\n\n[agents.b]\ntransport = "grpc"\n', 4,
     "agent 'b': unknown transport 'grpc'"),
    ('[agents.api]\ntransport = "http"\n', 1, "agent 'api': field 'url' is required for transport 'http'"),
    ('[agents.py]\ntransport = "python"\n', 1, "agent 'py': field 'target' is required"),
    ('[agents.c]\ntransport = "simulated"\ncapabilities = "security"\n', 1,
     "agent 'c': field 'capabilities' must be a list of strings"),
    ('\n\n[agents."quoted"]\ntransport = "simulated"\nseed = "one"\n', 3, "agent 'quoted': field 'seed'"),
])
def test_agent_errors_name_file_agent_field_and_line(tmp_path: Path, text: str, line: int, fragment: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(RegistryError) as info:
        load_registry(path)
    assert info.value.line == line
    assert str(info.value).startswith(f"{path}:{line}: ")
    assert fragment in str(info.value)


def test_unknown_top_level_key_suggests(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="unknown top-level key 'agent' \\(did you mean 'agents'\\?\\)"):
        load_registry(write(tmp_path, '[agent.a]\ntransport = "simulated"\n'))


def test_agents_must_be_a_table(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="'agents' must be a table"):
        load_registry(write(tmp_path, 'agents = 3\n'))


class TestLLMProviders:
    def test_single_provider_is_default(self, tmp_path: Path) -> None:
        registry = load_registry(write(tmp_path, '[llm.providers.only]\ntype = "mock"\n'))
        assert registry.default_llm_provider == "only"

    def test_default_flag(self, tmp_path: Path) -> None:
        text = '[llm.providers.a]\ntype = "mock"\n[llm.providers.b]\ntype = "mock"\ndefault = true\n'
        assert load_registry(write(tmp_path, text)).default_llm_provider == "b"

    def test_no_default_among_several(self, tmp_path: Path) -> None:
        text = '[llm.providers.a]\ntype = "mock"\n[llm.providers.b]\ntype = "mock"\n'
        assert load_registry(write(tmp_path, text)).default_llm_provider is None

    @pytest.mark.parametrize(("text", "fragment"), [
        ('[llm.providers.a]\ntype = "mock"\ndefault = true\n[llm.providers.b]\ntype = "mock"\ndefault = true\n',
         "more than one LLM provider has default = true: a, b"),
        ('[llm]\ndefault = "locl"\n[llm.providers.local]\ntype = "mock"\n',
         "unknown provider 'locl' (did you mean 'local'?)"),
        ('[llm]\ndefault = "a"\n[llm.providers.a]\ntype = "mock"\n[llm.providers.b]\ntype = "mock"\ndefault = true\n',
         "'llm.default' is 'a' but provider 'b' has default = true"),
        ('[llm.providers.x]\nbase_url = "http://h/v1"\n', "LLM provider 'x': field 'model' is required"),
        ('[llm]\nproviders = {}\nextra = 1\n', "unknown key 'llm.extra'"),
    ])
    def test_errors(self, tmp_path: Path, text: str, fragment: str) -> None:
        with pytest.raises(RegistryError) as info:
            load_registry(write(tmp_path, text))
        assert fragment in str(info.value)


class TestGet:
    def test_unknown_agent_suggests_close_names(self, tmp_path: Path) -> None:
        registry = load_registry(write(tmp_path, FULL))
        with pytest.raises(UnknownAgentError) as info:
            registry.get("secrity")
        assert str(info.value) == "unknown agent 'secrity' (did you mean 'security'?)"
        assert info.value.suggestions == ["security"]

    def test_unknown_agent_without_close_names_lists_known(self, tmp_path: Path) -> None:
        registry = load_registry(write(tmp_path, FULL))
        with pytest.raises(UnknownAgentError, match="known agents: security, quality, writer, sim-1"):
            registry.get("zzzzzz")

    def test_unknown_agent_in_empty_registry(self) -> None:
        with pytest.raises(UnknownAgentError, match="no agents are configured"):
            Registry().get("a")


def sim_registry() -> Registry:
    return Registry.from_dict({"agents": {
        "a": {"transport": "simulated", "capabilities": ["security"], "expertise": 0.5},
        "b": {"transport": "simulated", "capabilities": ["security", "code-analysis"], "expertise": 0.6},
        "c": {"transport": "simulated", "capabilities": ["code-analysis"], "expertise": 0.9},
        "d": {"transport": "simulated", "capabilities": ["writing"], "expertise": 0.95},
        "e": {"transport": "simulated", "capabilities": ["security"], "expertise": 0.5},
    }})


class TestSelect:
    def test_any_match_ordered_by_matches_expertise_id(self) -> None:
        chosen = sim_registry().select(["security", "code-analysis"])
        assert [s.id for s in chosen] == ["b", "c", "a", "e"]

    def test_single_capability(self) -> None:
        assert [s.id for s in sim_registry().select(["security"])] == ["b", "a", "e"]

    def test_max_agents_truncates_best_first(self) -> None:
        assert [s.id for s in sim_registry().select(["security"], max_agents=2)] == ["b", "a"]

    def test_empty_request_matches_everyone(self) -> None:
        assert [s.id for s in sim_registry().select([])] == ["d", "c", "b", "a", "e"]

    def test_too_few_raises_with_what_is_available(self) -> None:
        with pytest.raises(SelectionError) as info:
            sim_registry().select(["writing"], min_agents=2)
        message = str(info.value)
        assert "need at least 2 agents with any of the capabilities ['writing'], found 1 (d)" in message
        assert "Available agents: a [security]; b [security, code-analysis]" in message

    def test_unknown_capability_gets_a_suggestion(self) -> None:
        with pytest.raises(SelectionError, match="no agent declares 'securty' \\(did you mean 'security'\\?\\)"):
            sim_registry().select(["securty"])

    def test_min_zero_allows_empty(self) -> None:
        assert sim_registry().select(["nothing"], min_agents=0) == []

    @pytest.mark.parametrize(("args", "kwargs"), [
        (("security",), {}),
        (([1],), {}),
        ((["security"],), {"min_agents": -1}),
        ((["security"],), {"min_agents": 3, "max_agents": 2}),
    ])
    def test_bad_arguments(self, args: tuple[object, ...], kwargs: dict[str, int]) -> None:
        with pytest.raises(ValueError):
            sim_registry().select(*args, **kwargs)  # type: ignore[arg-type]
