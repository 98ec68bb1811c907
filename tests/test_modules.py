"""Modules as pattern authors use them: relative files next to a program, the bundled
stdlib/ and primitives/, what happens when a file changes or disappears between runs in
one process (the REPL, `prism serve`), and the errors for what cannot be imported."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import kernel


def run_file(path: Path) -> kernel.Result:
    return kernel.evaluate(path.read_text(encoding="utf-8"), filename=str(path))


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "scores.prism").write_text(
        'export function weight(x) { return x * 2 }\nexport const NAME = "v1"\n', encoding="utf-8")
    (tmp_path / "main.prism").write_text(
        'import { weight, NAME } from "./lib/scores"\n[weight(21), NAME]\n', encoding="utf-8")
    return tmp_path


def test_relative_import_next_to_the_program(project: Path) -> None:
    assert run_file(project / "main.prism").value == [42, "v1"]


def test_an_edited_module_is_picked_up_by_the_next_run(project: Path) -> None:
    assert run_file(project / "main.prism").value == [42, "v1"]
    module = project / "lib" / "scores.prism"
    module.write_text('export function weight(x) { return x * 3 }\nexport const NAME = "v2!"\n',
                      encoding="utf-8")
    st = module.stat()
    os.utime(module, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))   # a later mtime, whatever the clock
    assert run_file(project / "main.prism").value == [63, "v2!"]


def test_a_removed_module_is_a_clear_error_and_nothing_stale_is_served(project: Path) -> None:
    assert run_file(project / "main.prism").value == [42, "v1"]
    (project / "lib" / "scores.prism").unlink()
    with pytest.raises(kernel.PrismRuntimeError, match=r"Cannot resolve module './lib/scores'.*Tried: "):
        run_file(project / "main.prism")


def test_bundled_libraries_resolve_from_anywhere(tmp_path: Path) -> None:
    prog = tmp_path / "elsewhere.prism"
    prog.write_text('import { parallel } from "primitives/execution"\n'
                    'import { compose } from "stdlib/composer"\n'
                    '[parallel([() => 1, () => 2]), typeof compose]\n', encoding="utf-8")
    assert run_file(prog).value == [[1, 2], "function"]


@pytest.mark.parametrize("spec, message", [
    ("primitives/nope", "Cannot resolve module 'primitives/nope'"),
    ("primitives/../../etc/passwd", "Cannot resolve module 'primitives/../../etc/passwd'"),
    ("os", "use './path' for your own files"),
])
def test_unresolvable_imports_say_why(spec: str, message: str) -> None:
    with pytest.raises(kernel.PrismRuntimeError) as info:
        kernel.evaluate(f'import * as m from "{spec}"\n1')
    assert message in info.value.message


def test_a_module_with_a_syntax_error_names_the_module(project: Path) -> None:
    (project / "lib" / "broken.prism").write_text("export function f( {\n", encoding="utf-8")
    (project / "uses_broken.prism").write_text('import { f } from "./lib/broken"\nf()\n', encoding="utf-8")
    with pytest.raises(kernel.PrismError) as info:
        run_file(project / "uses_broken.prism")
    assert "broken.prism" in str(info.value)
