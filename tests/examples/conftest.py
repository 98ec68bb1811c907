"""Fixtures loading the example agents: every example has its own ``agents.py`` in a folder
whose name has a dash, so each is loaded from its path under a unique module name."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load_agents(example: str) -> ModuleType:
    """Import ``examples/<example>/agents.py`` as ``example_<example>_agents``."""
    name = "example_" + example.replace("-", "_") + "_agents"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / example / "agents.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def pr() -> ModuleType:
    """examples/pr-review/agents.py"""
    return load_agents("pr-review")


@pytest.fixture(scope="session")
def incident() -> ModuleType:
    """examples/incident-triage/agents.py"""
    return load_agents("incident-triage")


@pytest.fixture(scope="session")
def docs() -> ModuleType:
    """examples/doc-summary/agents.py"""
    return load_agents("doc-summary")
