"""Every node of every parsed golden file, example and library module carries a span."""
from __future__ import annotations

from pathlib import Path

import pytest

import kernel
from kernel import nodes as N

ROOT = Path(__file__).resolve().parent.parent
FILES = sorted(p for p in [*ROOT.glob("tests/golden/**/*.prism"), *ROOT.glob("primitives/*.prism"),
                           *ROOT.glob("stdlib/*.prism"), *ROOT.glob("examples/**/*.prism"),
                           ROOT / "bootstrap" / "bootstrap-composer.prism"])


def _cases(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").split("\n// ---\n")


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(ROOT)) for p in FILES])
def test_every_node_has_a_span(path):
    checked = 0
    for source in _cases(path):
        try:
            prog = kernel.parse(source, str(path))
        except kernel.PrismSyntaxError:
            continue                       # error cases are tested elsewhere
        for node in N.iter_nodes(prog):
            span = node.span
            assert isinstance(span, tuple) and len(span) == 4, (type(node).__name__, span)
            assert all(isinstance(x, int) and x >= 1 for x in span), (type(node).__name__, span)
            assert (span[2], span[3]) >= (span[0], span[1]), (type(node).__name__, span)
            checked += 1
    if checked == 0:
        pytest.skip("the file holds only syntax-error cases")
