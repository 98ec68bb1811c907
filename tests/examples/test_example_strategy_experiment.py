"""The strategy experiment: six ways of combining a simulated panel, compared on virtual
time through the real CLI. Seeded agents on a virtual clock make every run identical."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

FOLDER = Path(__file__).resolve().parents[2] / "examples" / "strategy-experiment"


def run_experiment(*extra: str) -> tuple[list[dict], str]:
    proc = subprocess.run([sys.executable, "-m", "bootstrap", "run", str(FOLDER / "experiment.prism"),
                           "--agents", str(FOLDER / "agents.toml"), "--virtual-time", "--json", *extra],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["value"], proc.stderr


@pytest.fixture(scope="module")
def experiment() -> tuple[list[dict], str]:
    return run_experiment()


@pytest.fixture(scope="module")
def table(experiment: tuple[list[dict], str]) -> list[dict]:
    rows, printed = experiment
    assert len(printed.strip().splitlines()) == len(rows) == 6   # the printed table goes to stderr with --json
    return rows


def test_the_readme_shows_the_table_it_prints(experiment: tuple[list[dict], str]) -> None:
    readme = (FOLDER / "README.md").read_text(encoding="utf-8")
    shown = readme.split("## What to expect", 1)[1].split("```")[1].strip().splitlines()
    assert experiment[1].strip().splitlines() == shown


def test_every_strategy_is_measured(table: list[dict]) -> None:
    assert [r["strategy"] for r in table] == [
        "single best agent", "fastest answer (race)", "first confident (>= 0.8)",
        "majority vote (all)", "quorum of 3, 10 s timeout", "most confident (all)"]
    assert all(0 <= r["accuracy"] <= 1 and r["secondsPerQuestion"] > 0 for r in table)


def test_the_panel_shows_the_expected_trade_offs(table: list[dict]) -> None:
    by = {r["strategy"]: r for r in table}
    race = by["fastest answer (race)"]
    # racing takes the quick, poorly calibrated agent's answer: fastest and least accurate
    assert race["secondsPerQuestion"] == min(r["secondsPerQuestion"] for r in table)
    assert race["accuracy"] < by["single best agent"]["accuracy"]
    # waiting for everyone and trusting confidence beats any single agent on this panel
    assert by["most confident (all)"]["accuracy"] >= by["single best agent"]["accuracy"]
    # a 10 s quorum of 3 often misses the slow agents
    assert by["quorum of 3, 10 s timeout"]["unanswered"] > 0


def test_the_experiment_is_reproducible(table: list[dict]) -> None:
    again, _ = run_experiment()
    assert again == table


def test_input_sets_the_number_of_questions() -> None:
    rows, _ = run_experiment("--input", '{"questions": 3}')
    assert all(round(r["accuracy"] * 3) == r["accuracy"] * 3 for r in rows)
