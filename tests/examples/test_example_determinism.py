"""Every example agent gives byte-identical output across processes and hash seeds."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = """
import json, sys
sys.path.insert(0, {here!r})
from conftest import load_agents
pr, inc, doc = (load_agents(n) for n in ("pr-review", "incident-triage", "doc-summary"))
out = []
for f in ("patch.diff", "clean.diff"):
    rs = [fn("t", {{"patch_file": f}}, {{}}) for fn in (pr.security, pr.quality, pr.performance)]
    out += rs + [pr.senior_architect("t", {{"patch_file": f, "reviews": rs}}, {{}})]
log = {{"log_file": "incident.log"}}
out += [inc.log_classifier("t", log, {{}}), inc.oncall_human("t", log, {{}})]
document = {{"document_file": "document.md"}}
out += [doc.reducer("t", document, {{}}), doc.keyword_extractor("t", document, {{}})]
print(json.dumps(out))
"""


def test_outputs_do_not_depend_on_the_hash_seed() -> None:
    here = str(Path(__file__).resolve().parent)
    outputs = set()
    for seed in ("0", "1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run([sys.executable, "-c", SCRIPT.format(here=here)], env=env,
                              capture_output=True, text=True, check=True, timeout=120)
        outputs.add(done.stdout)
    assert len(outputs) == 1
