"""The python transport: targets next to the agents file, sync/async callables, failures."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bootstrap.agents import transports
from bootstrap.agents.models import AgentRequest, AgentResponse
from bootstrap.agents.registry import Registry, load_registry
from bootstrap.agents.runtime import AgentRuntime

Run = Callable[[Any], Any]

AGENTS_PY = '''
import asyncio

def sync_agent(task, data, context):
    return {"value": f"sync:{task}:{data['n'] * 2}", "confidence": 0.8, "reasoning": "doubled",
            "metadata": {"round": context.get("round")}}

async def async_agent(task, data, context):
    await asyncio.sleep(0.01)
    return {"value": f"async:{task}", "confidence": 0.6}

def plain(task, data, context):
    return [task, data]

def two_args(task, data):
    return {"value": data, "confidence": 0.4}

def raising(task, data, context):
    raise RuntimeError("agent exploded")

async def async_raising(task, data, context):
    raise ValueError("async agent exploded")

def bad_confidence(task, data, context):
    return {"value": 1, "confidence": float("nan")}

class Reviewer:
    def __call__(self, task, data, context):
        return {"value": "instance", "confidence": 0.3}

reviewer = Reviewer()

class AsyncReviewer:
    async def __call__(self, task, data, context):
        await asyncio.sleep(0)
        return {"value": "async instance", "confidence": 0.35}

async_reviewer = AsyncReviewer()
not_callable = 42
'''

TOML = '''
[agents.sync]
transport = "python"
target = "agents:sync_agent"
[agents.async]
transport = "python"
target = "agents:async_agent"
[agents.plain]
transport = "python"
target = "agents:plain"
[agents.two]
transport = "python"
target = "agents:two_args"
[agents.raising]
transport = "python"
target = "agents:raising"
[agents.async-raising]
transport = "python"
target = "agents:async_raising"
[agents.nan]
transport = "python"
target = "agents:bad_confidence"
[agents.instance]
transport = "python"
target = "agents:reviewer"
[agents.async-instance]
transport = "python"
target = "agents:async_reviewer"
[agents.not-callable]
transport = "python"
target = "agents:not_callable"
[agents.missing-attr]
transport = "python"
target = "agents:nobody"
[agents.missing-module]
transport = "python"
target = "no_such_module_for_prism_tests:agent"
'''


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    (tmp_path / "agents.py").write_text(AGENTS_PY, encoding="utf-8")
    (tmp_path / "agents.toml").write_text(TOML, encoding="utf-8")
    return load_registry(tmp_path / "agents.toml")


def run_agent(arun: Run, registry: Registry, agent_id: str, data: Any = None) -> AgentResponse:
    request = AgentRequest(task="t", data=data, context={"round": 2})
    return arun(transports.call(registry.get(agent_id), request))


def test_sync_callable(arun: Run, registry: Registry) -> None:
    response = run_agent(arun, registry, "sync", {"n": 21})
    assert response.value == "sync:t:42" and response.confidence == 0.8
    assert response.reasoning == "doubled" and response.metadata["round"] == 2
    assert response.metadata["transport"] == "python" and response.metadata["agent"] == "sync"


def test_async_callable(arun: Run, registry: Registry) -> None:
    response = run_agent(arun, registry, "async")
    assert (response.value, response.confidence) == ("async:t", 0.6)


def test_plain_return_value(arun: Run, registry: Registry) -> None:
    response = run_agent(arun, registry, "plain", {"k": 1})
    assert response.value == ["t", {"k": 1}] and response.confidence == 0.5


def test_two_argument_callable(arun: Run, registry: Registry) -> None:
    response = run_agent(arun, registry, "two", "payload")
    assert (response.value, response.confidence) == ("payload", 0.4)


def test_callable_instance(arun: Run, registry: Registry) -> None:
    assert run_agent(arun, registry, "instance").value == "instance"
    assert run_agent(arun, registry, "async-instance").value == "async instance"


@pytest.mark.parametrize(("agent_id", "message"), [
    ("raising", "RuntimeError: agent exploded"),
    ("async-raising", "ValueError: async agent exploded"),
])
def test_exceptions_become_failures(arun: Run, registry: Registry, agent_id: str, message: str) -> None:
    response = run_agent(arun, registry, agent_id)
    assert response.confidence == 0.0 and response.value is None
    assert response.error == message
    assert "Traceback" in response.metadata["traceback"]


def test_nan_confidence(arun: Run, registry: Registry) -> None:
    response = run_agent(arun, registry, "nan")
    assert response.confidence == 0.0 and response.error is not None


@pytest.mark.parametrize(("agent_id", "fragment"), [
    ("not-callable", "is a int, not a callable"),
    ("missing-attr", "'agents' has no attribute 'nobody'"),
    ("missing-module", "No module named 'no_such_module_for_prism_tests'"),
])
def test_bad_targets_are_failures(arun: Run, registry: Registry, agent_id: str, fragment: str) -> None:
    response = run_agent(arun, registry, agent_id)
    assert response.confidence == 0.0
    assert response.error is not None
    assert response.error.startswith("cannot load python target") and fragment in response.error


def test_same_module_name_in_two_folders(tmp_path: Path, arun: Run) -> None:
    """Two example folders each with an `agents.py`: each registry gets its own module."""
    registries = []
    for name in ("first", "second"):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "agents.py").write_text(f"def who(task, data, context):\n    return '{name}'\n")
        (folder / "agents.toml").write_text('[agents.who]\ntransport = "python"\ntarget = "agents:who"\n')
        registries.append(load_registry(folder / "agents.toml"))
    answers = [run_agent(arun, r, "who").value for r in registries]
    assert answers == ["first", "second"]


def test_sibling_import_at_module_load(tmp_path: Path, arun: Run) -> None:
    (tmp_path / "helpers_for_prism_test.py").write_text("def shout(s):\n    return s.upper()\n")
    (tmp_path / "shouter.py").write_text(textwrap.dedent("""
        from helpers_for_prism_test import shout
        def agent(task, data, context):
            return {"value": shout(task), "confidence": 0.9}
    """))
    (tmp_path / "agents.toml").write_text('[agents.s]\ntransport = "python"\ntarget = "shouter:agent"\n')
    assert run_agent(arun, load_registry(tmp_path / "agents.toml"), "s").value == "T"


def test_stdlib_name_is_refused(tmp_path: Path, arun: Run) -> None:
    (tmp_path / "json.py").write_text("def agent(task, data, context):\n    return 1\n")
    (tmp_path / "agents.toml").write_text('[agents.j]\ntransport = "python"\ntarget = "json:agent"\n')
    response = run_agent(arun, load_registry(tmp_path / "agents.toml"), "j")
    assert response.confidence == 0.0 and "standard-library module" in (response.error or "")


def test_installed_module_without_base_dir(arun: Run) -> None:
    registry = Registry.from_dict({"agents": {"dumps": {"transport": "python", "target": "json:dumps"}}})
    response = arun(transports.call(registry.get("dumps"), AgentRequest(task="t")))
    # json.dumps takes one positional parameter: it gets the task
    assert response.value == '"t"'


def test_blocking_sync_agents_overlap(tmp_path: Path) -> None:
    """Sync agents run in worker threads, so ten 200 ms sleeps overlap (reported, not asserted on time)."""
    (tmp_path / "sleepy.py").write_text("import time\ndef agent(task, data, context):\n    time.sleep(0.2)\n"
                                        "    return {'value': data, 'confidence': 0.9}\n")
    (tmp_path / "agents.toml").write_text('[agents.sleepy]\ntransport = "python"\ntarget = "sleepy:agent"\n')
    import time
    with AgentRuntime(load_registry(tmp_path / "agents.toml")) as runtime:
        start = time.perf_counter()
        futures = [runtime.submit("sleepy", "nap", i) for i in range(10)]
        values = [f.result(timeout=10).value for f in futures]
        elapsed = time.perf_counter() - start
    assert values == list(range(10))
    print(f"10 blocking 200 ms python agents: {elapsed * 1000:.0f} ms")
