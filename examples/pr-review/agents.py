"""Review agents for the pr-review example: security, code-quality and performance reviewers
plus a senior architect who re-checks their findings. Static analysis of the added lines of
a unified diff (Python ``ast`` where a hunk parses, regexes elsewhere); fully deterministic."""

from __future__ import annotations

import ast
import math
import re
import textwrap
import threading
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterable, Iterator

HERE = Path(__file__).resolve().parent

SEVERITY_RANK = {"low": 1, "medium": 2, "high": 3, "critical": 4}
BLOCKING = frozenset({"high", "critical"})
PERSPECTIVES = ("security", "code-quality", "performance")

MAX_FUNCTION_LINES = 35
MAX_NESTING = 4
MIN_TESTED_SOURCE_LINES = 10

# Share of a perspective's rules that still run on a line that could not be parsed (regex only).
REGEX_DEPTH = {"security": 0.8, "code-quality": 0.5, "performance": 0.6}
# Assumed per-100-lines miss rate of the detectors on fully analysed code.
RECALL_PER_100_LINES = 0.99
ARCHITECT_CAP = 0.99
UNCONFIRMED_PENALTY = 0.98

PY_SUFFIXES = (".py", ".pyi")
CONFIG_SUFFIXES = (".env", ".ini", ".cfg", ".conf", ".toml", ".yaml", ".yml", ".json", ".sh",
                   ".properties")


# --------------------------------------------------------------------------- diff model


@dataclass(frozen=True)
class NewLine:
    """One line of the new side of a hunk (context or added)."""

    number: int
    text: str
    added: bool


@dataclass
class FileDiff:
    """The new-side view of one file in a unified diff."""

    path: str
    is_new: bool = False
    is_deleted: bool = False
    is_binary: bool = False
    hunks: list[list[NewLine]] = field(default_factory=list)

    @property
    def added(self) -> dict[int, str]:
        """Added lines by new-file line number."""
        return {ln.number: ln.text for hunk in self.hunks for ln in hunk if ln.added}


# CPython 3.11's AST constructor keeps a recursion counter that is not thread-safe
# ("AST constructor recursion depth mismatch" when agents parse concurrently).
_AST_LOCK = threading.Lock()

_HUNK_HEADER = re.compile(r"^@@ -\d+(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
_DIFF_MARKER = re.compile(r"^(?:diff --git |--- |\+\+\+ |@@ -)", re.M)


def _strip_path(raw: str) -> str:
    path = raw.split("\t", 1)[0].strip()
    if len(path) >= 2 and path[0] == path[-1] == '"':
        path = path[1:-1]
    return re.sub(r"^[ab]/", "", path)


def parse_diff(text: str) -> list[FileDiff]:
    """Parse a unified diff (git or plain) into files with their new-side hunks.

    Hunk bodies are consumed by the counts in their ``@@`` header, so removed lines that
    look like headers (``--- x``) are never mistaken for a new file.
    """
    files: list[FileDiff] = []
    current: FileDiff | None = None
    hunk: list[NewLine] | None = None
    old_left = new_left = number = 0
    for raw in text.splitlines():
        if hunk is not None and (old_left > 0 or new_left > 0):
            tag, body = raw[:1], raw[1:]
            if tag == "+":
                hunk.append(NewLine(number, body, True))
                number, new_left = number + 1, new_left - 1
                continue
            if tag == "-":
                old_left -= 1
                continue
            if tag == " " or raw == "":
                hunk.append(NewLine(number, body, False))
                number, old_left, new_left = number + 1, old_left - 1, new_left - 1
                continue
            if tag == "\\":
                continue
            hunk = None  # truncated hunk: read this line as a header
        if raw.startswith("diff --git "):
            match = re.match(r"diff --git (\S+) (\S+)", raw)
            current = FileDiff(path=_strip_path(match.group(2)) if match else "")
            files.append(current)
            hunk = None
        elif raw.startswith("--- "):
            if current is None or current.hunks:
                current = FileDiff(path="")
                files.append(current)
            old_path = _strip_path(raw[4:])
            if old_path == "/dev/null":
                current.is_new = True
            elif not current.path:
                current.path = old_path
        elif raw.startswith("+++ ") and current is not None:
            new_path = _strip_path(raw[4:])
            if new_path == "/dev/null":
                current.is_deleted = True
            else:
                current.path = new_path
        elif current is not None:
            if raw.startswith("new file mode"):
                current.is_new = True
            elif raw.startswith("deleted file mode"):
                current.is_deleted = True
            elif raw.startswith(("Binary files", "GIT binary patch")):
                current.is_binary = True
            elif match := _HUNK_HEADER.match(raw):
                old_left = int(match.group(1)) if match.group(1) is not None else 1
                number = int(match.group(2))
                new_left = int(match.group(3)) if match.group(3) is not None else 1
                hunk = []
                current.hunks.append(hunk)
    return [f for f in files if f.path]


# --------------------------------------------------------------------------- loading data

_PATCH_TEXT_KEYS = ("patch", "diff")
_PATCH_FILE_KEYS = ("patch_file", "patchFile", "diff_file", "diffFile")


def _read_patch_file(name: str) -> str:
    path = Path(name)
    if not path.is_absolute():
        path = HERE / path
    if not path.is_file():
        raise FileNotFoundError(f"patch file not found: {path}")
    return path.read_text(encoding="utf-8", errors="replace")


def _find_patch(obj: Any, depth: int = 0) -> str | None:
    if depth > 6:
        return None
    if isinstance(obj, str):
        return obj if _DIFF_MARKER.search(obj) else None
    if isinstance(obj, dict):
        for key in _PATCH_TEXT_KEYS:
            if isinstance(obj.get(key), str) and obj[key].strip():
                return obj[key]
        for key in _PATCH_FILE_KEYS:
            if isinstance(obj.get(key), str) and obj[key].strip():
                return _read_patch_file(obj[key].strip())
        children: Iterable[Any] = obj.values()
    elif isinstance(obj, (list, tuple)):
        children = obj
    else:
        return None
    for child in children:
        if isinstance(child, (dict, list, tuple)) or (isinstance(child, str) and depth < 2):
            found = _find_patch(child, depth + 1)
            if found is not None:
                return found
    return None


def load_patch(data: Any, context: dict | None = None) -> str:
    """Return the diff text from ``data`` (or, failing that, ``context``).

    Accepted: a diff string; a ``.diff``/``.patch`` file name; a mapping with ``patch``/``diff``
    text or ``patch_file``/``diff_file`` (relative names resolve against this folder), found
    at any nesting depth (e.g. under ``input``).
    """
    if isinstance(data, str) and not _DIFF_MARKER.search(data):
        name = data.strip()
        if name.endswith((".diff", ".patch")):
            return _read_patch_file(name)
    for source in (data, context):
        found = _find_patch(source)
        if found is not None:
            return found
    raise ValueError("no patch found: pass a diff string, {'patch': <diff text>} or "
                     "{'patch_file': <path relative to examples/pr-review>}")


# --------------------------------------------------------------------------- file views


def language_of(path: str) -> str:
    """'python', 'config' (secrets can hide there) or 'other' (not analysed)."""
    name = PurePosixPath(path).name.lower()
    if name.endswith(PY_SUFFIXES):
        return "python"
    if name.endswith(CONFIG_SUFFIXES) or name in {"dockerfile", ".env", "makefile"}:
        return "config"
    return "other"


def is_test_path(path: str) -> bool:
    """True for test modules and anything under a tests/ folder."""
    p = PurePosixPath(path)
    return (p.name.startswith("test_") or p.name.endswith("_test.py") or p.name == "conftest.py"
            or any(part in {"tests", "test"} for part in p.parts[:-1]))


@dataclass
class Region:
    """A stretch of a hunk that parses as Python on its own."""

    start: int
    end: int
    tree: ast.Module

    def line(self, node: ast.AST) -> int:
        """New-file line number of an AST node of this region."""
        return self.start + getattr(node, "lineno", 1) - 1

    def end_line(self, node: ast.AST) -> int:
        """New-file line number of the last line of an AST node."""
        return self.start + (getattr(node, "end_lineno", None) or getattr(node, "lineno", 1)) - 1


@dataclass
class FileView:
    """Everything the detectors know about one changed file."""

    path: str
    language: str
    is_test: bool
    is_new: bool
    added: dict[int, str]
    hunks: list[list[NewLine]]
    regions: list[Region]
    deep: set[int]

    @property
    def code_lines(self) -> list[int]:
        """Added, non-blank line numbers."""
        return sorted(n for n, text in self.added.items() if text.strip())


MAX_TRIM_HEAD = 12
MAX_TRIM_TAIL = 6


def _parse_hunk(lines: list[NewLine]) -> Region | None:
    """Largest stretch of the hunk (trimming a few lines at either end) that parses.

    Hunks start and end mid-block, so the first lines may be indented deeper than the
    rest; trimming them until ``ast.parse`` accepts the dedented text recovers the
    syntax tree of the complete statements in between.
    """
    n = len(lines)
    spans = sorted(((i, j) for i in range(min(n, MAX_TRIM_HEAD + 1))
                    for j in range(n, max(i, n - MAX_TRIM_TAIL - 1), -1)),
                   key=lambda ij: (ij[0] + n - ij[1], ij[0]))
    for i, j in spans:
        chunk = [ln.text for ln in lines[i:j]]
        if not any(text.strip() for text in chunk):
            continue
        try:
            with _AST_LOCK:
                tree = ast.parse(textwrap.dedent("\n".join(chunk)))
        except (SyntaxError, ValueError):
            continue
        return Region(start=lines[i].number, end=lines[j - 1].number, tree=tree)
    return None


def build_views(patch: str) -> list[FileView]:
    """Parse the diff and attach syntax trees to every Python hunk that parses."""
    views = []
    for diff in parse_diff(patch):
        if diff.is_deleted or diff.is_binary:
            continue
        language = language_of(diff.path)
        regions = []
        if language == "python":
            regions = [r for r in (_parse_hunk(h) for h in diff.hunks if h) if r is not None]
        added = diff.added
        deep = {n for n in added for r in regions if r.start <= n <= r.end}
        views.append(FileView(diff.path, language, is_test_path(diff.path), diff.is_new, added,
                              diff.hunks, regions, deep))
    return views


# --------------------------------------------------------------------------- findings


@dataclass(frozen=True)
class Finding:
    """One reported issue; ``confidence`` is the rule's precision (how often it is right)."""

    severity: str
    file: str
    line: int
    rule: str
    message: str
    perspective: str
    confidence: float
    method: str = "ast"

    @property
    def key(self) -> tuple[str, int, str]:
        """Identity used for de-duplication and confirmation."""
        return (self.file, self.line, self.rule)

    def as_dict(self) -> dict[str, Any]:
        """JSON form returned to the orchestrator."""
        return {"severity": self.severity, "file": self.file, "line": self.line,
                "rule": self.rule, "message": self.message, "perspective": self.perspective,
                "confidence": self.confidence, "method": self.method}


def rank(findings: Iterable[Finding]) -> list[Finding]:
    """De-duplicate by (file, line, rule), keeping the strongest; most severe first."""
    best: dict[tuple[str, int, str], Finding] = {}
    for f in findings:
        old = best.get(f.key)
        if old is None or (SEVERITY_RANK[f.severity], f.confidence) > (
                SEVERITY_RANK[old.severity], old.confidence):
            best[f.key] = f
    return sorted(best.values(),
                  key=lambda f: (-SEVERITY_RANK[f.severity], -f.confidence, f.file, f.line, f.rule))


# --------------------------------------------------------------------------- ast helpers

AstPath = tuple[tuple[ast.AST, str], ...]
_FUNCS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)
_LOOPS = (ast.For, ast.AsyncFor, ast.While)
_COMPS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)
_BLOCKS = (ast.If, ast.For, ast.AsyncFor, ast.While, ast.With, ast.AsyncWith, ast.Try,
           ast.Match) + ((ast.TryStar,) if hasattr(ast, "TryStar") else ())


def walk(tree: ast.AST) -> Iterator[tuple[ast.AST, AstPath]]:
    """Pre-order walk yielding each node with its ancestors and the field leading to it."""
    stack: list[tuple[ast.AST, AstPath]] = [(tree, ())]
    while stack:
        node, path = stack.pop()
        yield node, path
        children: list[tuple[ast.AST, AstPath]] = []
        for name, value in ast.iter_fields(node):
            items = value if isinstance(value, list) else [value]
            children.extend((item, path + ((node, name),)) for item in items
                            if isinstance(item, ast.AST))
        stack.extend(reversed(children))


def dotted(node: ast.AST) -> str:
    """``a.b.c`` for names and attributes, ``f()`` for calls, ``?`` otherwise."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{dotted(node.value)}.{node.attr}"
    if isinstance(node, ast.Call):
        return f"{dotted(node.func)}()"
    return "?"


def enclosing_loops(path: AstPath) -> list[ast.AST]:
    """Loops whose every iteration re-evaluates the node (reset at function boundaries)."""
    loops: list[ast.AST] = []
    for parent, fieldname in path:
        if isinstance(parent, _FUNCS):
            loops.clear()
        elif isinstance(parent, _LOOPS) and fieldname == "body":
            loops.append(parent)
        elif isinstance(parent, ast.While) and fieldname == "test":
            loops.append(parent)
        elif isinstance(parent, _COMPS) and fieldname in {"elt", "key", "value"}:
            loops.append(parent)
    return loops


def enclosing_function(path: AstPath) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    """Innermost function around the node, if any."""
    for parent, _ in reversed(path):
        if isinstance(parent, (ast.FunctionDef, ast.AsyncFunctionDef)):
            return parent
    return None


def _is_str(node: ast.AST) -> bool:
    return (isinstance(node, ast.Constant) and isinstance(node.value, str)) or isinstance(
        node, ast.JoinedStr)


def _literal_text(node: ast.AST) -> str:
    """The literal parts of a string expression (used to recognise SQL text)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(_literal_text(v) if not isinstance(v, ast.FormattedValue) else " ? "
                       for v in node.values)
    if isinstance(node, ast.BinOp):
        return _literal_text(node.left) + " ? " + _literal_text(node.right)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        return _literal_text(node.func.value)
    return ""


def interpolated(node: ast.AST) -> bool:
    """True when a string is assembled from runtime values (f-string, %, +, .format)."""
    if isinstance(node, ast.JoinedStr):
        return any(isinstance(v, ast.FormattedValue) for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
        return _is_str(node.left)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        sides = (node.left, node.right)
        constant = all(isinstance(s, ast.Constant) for s in sides)
        return not constant and any(_is_str(s) or interpolated(s) for s in sides)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        return node.func.attr == "format" and _is_str(node.func.value)
    return False


def _keyword(call: ast.Call, name: str) -> ast.AST | None:
    return next((kw.value for kw in call.keywords if kw.arg == name), None)


def _is_const(node: ast.AST | None, value: Any) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def _assignments(func: ast.AST) -> dict[str, list[tuple[int, ast.AST]]]:
    """Simple ``name = value`` assignments of a function or module, by name, in line order."""
    found: dict[str, list[tuple[int, ast.AST]]] = defaultdict(list)
    for node, _ in walk(func):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(
                node.targets[0], ast.Name):
            found[node.targets[0].id].append((node.lineno, node.value))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value:
            found[node.target.id].append((node.lineno, node.value))
    for entries in found.values():
        entries.sort(key=lambda e: e[0])
    return found


# --------------------------------------------------------------------------- regex helpers


@dataclass(frozen=True)
class LineRule:
    """A line-level detector, used where no syntax tree is available."""

    perspective: str
    rule: str
    pattern: re.Pattern[str]
    severity: str
    confidence: float
    message: str
    loop_only: bool = False


_SQL_TEXT = re.compile(r"(?is)\b(?:select\b.+\bfrom|insert\s+into|update\b.+\bset|delete\s+from|"
                       r"create\s+table|drop\s+table)\b")
_LOOP_HEADER = re.compile(r"^\s*(?:async\s+)?(?:for|while)\b")
_DEF_HEADER = re.compile(r"^\s*(?:async\s+def|def|class)\b")

FALLBACK_RULES = (
    LineRule("security", "sql-injection",
             re.compile(r"""(?i)^(?=.*\b(?:select|insert|update|delete)\b).*?"""
                        r"""(?:\bf["'][^"']*\{|["']\s*%\s*[(\w]|["']\.format\(|["']\s*\+|"""
                        r"""\+\s*["'])"""),
             "high", 0.7, "SQL text assembled from runtime values; use query parameters"),
    LineRule("security", "shell-injection", re.compile(r"shell\s*=\s*True"), "high", 0.75,
             "shell=True: the command is interpreted by a shell; pass an argument list"),
    LineRule("security", "code-injection", re.compile(r"(?<![\w.])(?:eval|exec)\((?!\s*[\"'])"),
             "high", 0.75, "eval/exec of a runtime value executes arbitrary code"),
    LineRule("security", "unsafe-deserialisation",
             re.compile(r"\b(?:c?[Pp]ickle|dill|marshal)\.loads?\(|\byaml\.(?:unsafe_)?load\("
                        r"(?![^)]*SafeLoader)"),
             "high", 0.7,
             "deserialising untrusted bytes can execute code; use JSON or a safe loader"),
    LineRule("security", "weak-hash", re.compile(r"\bhashlib\.(?:md5|sha1)\("), "medium", 0.5,
             "MD5/SHA-1 are broken for security uses"),
    LineRule("security", "tls-verification-disabled",
             re.compile(r"verify\s*=\s*False|CERT_NONE|_create_unverified_context|"
                        r"check_hostname\s*=\s*False"),
             "high", 0.8, "TLS certificate verification disabled"),
    LineRule("code-quality", "bare-except", re.compile(r"^\s*except\s*:"), "medium", 0.9,
             "bare except also catches KeyboardInterrupt/SystemExit and hides bugs"),
    LineRule("code-quality", "print-debugging", re.compile(r"^\s*print\("), "low", 0.6,
             "print() in library code; use logging"),
    LineRule("code-quality", "debugger-left-in",
             re.compile(r"\bbreakpoint\(\)|\b(?:i?pdb)\.set_trace\(\)"), "high", 0.9,
             "debugger breakpoint left in the code"),
    LineRule("performance", "query-in-loop",
             re.compile(r"\.(?:execute|executemany|query|raw)\(|\.objects\.(?:get|filter)\("),
             "high", 0.65, "database query inside a loop (N+1 queries)", loop_only=True),
    LineRule("performance", "http-in-loop",
             re.compile(r"\b(?:requests|httpx)\.(?:get|post|put|patch|delete|head|request)\(|"
                        r"\burlopen\("),
             "high", 0.65, "HTTP call inside a loop", loop_only=True),
    LineRule("performance", "regex-compile-in-loop", re.compile(r"\bre\.compile\("), "low", 0.6,
             "regex compiled on every iteration; hoist it out of the loop", loop_only=True),
    LineRule("performance", "string-concat-in-loop", re.compile(r"\w\s*\+=\s*f?[\"']"), "medium",
             0.55, "string built with += in a loop (quadratic); collect parts and join",
             loop_only=True),
    LineRule("performance", "sleep-call", re.compile(r"\btime\.sleep\("), "medium", 0.65,
             "time.sleep blocks the worker"),
    LineRule("performance", "read-whole-file",
             re.compile(r"\.(?:read|readlines|read_text|read_bytes)\(\)"), "low", 0.45,
             "reads the whole file into memory"),
)


def _indent(text: str) -> int:
    return len(text) - len(text.lstrip())


def in_loop_by_indentation(hunk: list[NewLine], index: int) -> bool:
    """Whether an enclosing header (less indented, earlier in the hunk) is a for/while loop."""
    current = _indent(hunk[index].text)
    for line in reversed(hunk[:index]):
        if not line.text.strip() or _indent(line.text) >= current:
            continue
        if _LOOP_HEADER.match(line.text):
            return True
        if _DEF_HEADER.match(line.text):
            return False
        current = _indent(line.text)
    return False


def fallback_findings(perspective: str, views: list[FileView]) -> list[Finding]:
    """Run the line rules of a perspective on added Python lines that have no syntax tree."""
    rules = [r for r in FALLBACK_RULES if r.perspective == perspective]
    out = []
    for view in views:
        if view.language != "python":
            continue
        for hunk in view.hunks:
            for index, line in enumerate(hunk):
                if not line.added or line.number in view.deep or not line.text.strip():
                    continue
                code = line.text.split("#", 1)[0] if "#" in line.text else line.text
                for rule in rules:
                    if not rule.pattern.search(code):
                        continue
                    if rule.loop_only and not in_loop_by_indentation(hunk, index):
                        continue
                    out.append(Finding(rule.severity, view.path, line.number, rule.rule,
                                       rule.message + " (line-level check, no syntax tree)",
                                       perspective, rule.confidence, "regex"))
    return out


# --------------------------------------------------------------------------- security

SUBPROCESS_CALLS = {"subprocess.run", "subprocess.call", "subprocess.check_call",
                    "subprocess.check_output", "subprocess.Popen", "Popen", "check_output",
                    "check_call"}
OS_SHELL_CALLS = {"os.system", "os.popen", "commands.getoutput", "commands.getstatusoutput"}
DESERIALISERS = {"pickle.loads", "pickle.load", "cPickle.loads", "cPickle.load", "dill.loads",
                 "dill.load", "marshal.loads", "marshal.load", "jsonpickle.decode",
                 "yaml.unsafe_load", "pickle.Unpickler", "shelve.open"}
SQL_SINK = re.compile(r"(?:^|\.)(?:execute|executemany|executescript|exec_driver_sql|raw|"
                      r"read_sql|read_sql_query)$|^(?:sqlalchemy\.)?text$")
SECRET_WORDS = re.compile(r"(?i)passw|pwd|secret|token|credential|api_?key")

KNOWN_SECRET_FORMATS = (
    ("AWS access key id", re.compile(r"\bAKIA[0-9A-Z]{16}\b")),
    ("private key block", re.compile(r"-----BEGIN (?:RSA |EC |DSA |OPENSSH )?PRIVATE KEY-----")),
    ("GitHub token", re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b")),
    ("Slack token", re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}\b")),
    ("payment-provider secret key", re.compile(r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}\b")),
    ("Google API key", re.compile(r"\bAIza[0-9A-Za-z_\-]{35}\b")),
    ("JSON web token", re.compile(r"\beyJ[\w-]{8,}\.eyJ[\w-]{8,}\.[\w-]{8,}")),
)
NAMED_SECRET = re.compile(
    r"""(?i)\b([a-z0-9_]*(?:password|passwd|pwd|secret|token|api_?key|access_?key|private_?key|"""
    r"""credentials?)[a-z0-9_]*)["']?\s*[:=]\s*(["'])([^"'\s]{4,})\2""")
PLACEHOLDER = re.compile(r"(?i)^(?:x+|\*+|<.*>|\$\{.*\}|\{\{.*\}\}|changeme|example|dummy|"
                         r"placeholder|redacted|none|null|your[_-].*)$")
QUOTED_TOKEN = re.compile(r"""(["'])([A-Za-z0-9+/=_\-]{20,})\1""")
MIN_SECRET_ENTROPY = 3.7


def shannon_entropy(text: str) -> float:
    """Bits per character of the string's own character distribution."""
    counts = Counter(text)
    return -sum(c / len(text) * math.log2(c / len(text)) for c in counts.values()) if text else 0.0


def secret_findings(views: list[FileView]) -> list[Finding]:
    """Hard-coded secrets by known key format, by secret-like name, and by entropy.

    Signals on one line are merged into one finding whose confidence is the noisy-OR of
    the signals' precisions (independent detectors agreeing make the finding stronger).
    """
    out = []
    for view in views:
        if view.language == "other":
            continue
        for number, text in sorted(view.added.items()):
            signals: list[tuple[str, str, float]] = []
            for label, pattern in KNOWN_SECRET_FORMATS:
                if pattern.search(text):
                    signals.append((label + " format", "critical", 0.95))
            named = NAMED_SECRET.search(text)
            if named and not PLACEHOLDER.match(named.group(3)):
                signals.append((f"literal assigned to {named.group(1)}", "high", 0.8))
            for match in QUOTED_TOKEN.finditer(text):
                token = match.group(2)
                if (re.search(r"\d", token) and re.search(r"[A-Za-z]", token)
                        and shannon_entropy(token) >= MIN_SECRET_ENTROPY):
                    bits = shannon_entropy(token)
                    signals.append((f"high-entropy literal ({bits:.1f} bits/char)", "medium", 0.55))
                    break
            if not signals:
                continue
            severity = max((s for _, s, _ in signals), key=SEVERITY_RANK.__getitem__)
            confidence = 1 - math.prod(1 - p for _, _, p in signals)
            if view.is_test:
                severity, confidence = "low", confidence * 0.6
            out.append(Finding(severity, view.path, number, "hardcoded-secret",
                               "hard-coded secret (" + "; ".join(l for l, _, _ in signals)
                               + "): load it from the environment or a secrets manager",
                               "security", round(confidence, 3), "regex"))
    return out


def _security_tree(view: FileView, region: Region) -> Iterator[Finding]:
    tree = region.tree
    module_assigns = _assignments(tree)
    sql_lines: set[int] = set()
    commands: set[int] = set()  # shell command strings: judged as shell-injection, not SQL

    def emit(node: ast.AST, severity: str, rule: str, message: str, confidence: float,
             line: int | None = None) -> Iterator[Finding]:
        number = line if line is not None else region.line(node)
        if number in view.added:
            yield Finding(severity, view.path, number, rule, message, "security", confidence)

    for node, path in walk(tree):
        if isinstance(node, ast.Call):
            name = dotted(node.func)
            first = node.args[0] if node.args else None
            if first is not None and name in SUBPROCESS_CALLS | OS_SHELL_CALLS:
                commands.update(id(n) for n in ast.walk(first))
            if SQL_SINK.search(name) and first is not None:
                source, source_line = first, region.line(first)
                if isinstance(first, ast.Name):
                    func = enclosing_function(path)
                    scope = _assignments(func) if func is not None else module_assigns
                    earlier = [(ln, v) for ln, v in scope.get(first.id, []) if ln <= node.lineno]
                    if earlier:
                        source, source_line = earlier[-1][1], region.start + earlier[-1][0] - 1
                if interpolated(source):
                    sql_lines.add(source_line)
                    yield from emit(node, "critical", "sql-injection",
                                    f"SQL built by string formatting reaches {name}() on line "
                                    f"{region.line(node)}: use query parameters (?)", 0.9,
                                    source_line)
            if name in SUBPROCESS_CALLS and _is_const(_keyword(node, "shell"), True):
                command = first if first is not None else _keyword(node, "args")
                if command is not None and isinstance(command, ast.Constant):
                    yield from emit(node, "low", "shell-injection",
                                    "shell=True with a constant command; prefer an argument list",
                                    0.5)
                else:
                    yield from emit(node, "critical", "shell-injection",
                                    f"{name}() runs a command built from runtime values through a "
                                    "shell (shell=True): command injection; pass an argument "
                                    "list without shell", 0.9)
            elif name in OS_SHELL_CALLS and first is not None and not isinstance(first,
                                                                                 ast.Constant):
                yield from emit(node, "high", "shell-injection",
                                f"{name}() of a runtime value: command injection", 0.85)
            if name in {"eval", "exec"} and first is not None and not isinstance(first,
                                                                                 ast.Constant):
                yield from emit(node, "high", "code-injection",
                                f"{name}() of a runtime value executes arbitrary code; parse "
                                "the value instead (int(), json.loads, ast.literal_eval)", 0.9)
            loader = _keyword(node, "Loader")
            safe_yaml = loader is not None and dotted(loader).endswith("SafeLoader")
            if name in DESERIALISERS or (name == "yaml.load" and not safe_yaml):
                yield from emit(node, "high", "unsafe-deserialisation",
                                f"{name}() can execute code embedded in the data; use JSON or "
                                "a safe loader for anything not produced by this process", 0.8)
            weak = name in {"hashlib.md5", "hashlib.sha1", "md5", "sha1"} or (
                name == "hashlib.new" and isinstance(first, ast.Constant)
                and str(first.value).lower() in {"md5", "sha1"})
            if weak and not _is_const(_keyword(node, "usedforsecurity"), False):
                func = enclosing_function(path)
                around = ast.unparse(node) + (
                    " " + func.name + " " + " ".join(a.arg for a in func.args.args) if func else "")
                if SECRET_WORDS.search(around):
                    yield from emit(node, "high", "weak-hash",
                                    f"{name}() used on a password: fast unsalted hashes are "
                                    "brute-forced easily; use a KDF (pbkdf2, scrypt, argon2)", 0.85)
                else:
                    yield from emit(node, "low", "weak-hash",
                                    f"{name}() is fine for checksums, never for secrets", 0.45)
            if _is_const(_keyword(node, "verify"), False):
                yield from emit(node, "high", "tls-verification-disabled",
                                "verify=False disables TLS certificate checks "
                                "(man-in-the-middle)", 0.9)
            if name.endswith("_create_unverified_context"):
                yield from emit(node, "high", "tls-verification-disabled",
                                "unverified SSL context disables certificate checks", 0.85)
            if name.endswith(".run") and _is_const(_keyword(node, "debug"), True):
                yield from emit(node, "medium", "debug-enabled",
                                "debug=True exposes an interactive debugger (code execution)", 0.7)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Attribute) and target.attr == "check_hostname" and \
                        _is_const(node.value, False):
                    yield from emit(node, "high", "tls-verification-disabled",
                                    "check_hostname = False disables hostname verification", 0.85)
                if isinstance(target, ast.Attribute) and target.attr == "verify_mode" and \
                        dotted(node.value).endswith("CERT_NONE"):
                    yield from emit(node, "high", "tls-verification-disabled",
                                    "verify_mode = CERT_NONE disables certificate checks", 0.85)
    for node, _ in walk(tree):
        if isinstance(node, (ast.JoinedStr, ast.BinOp, ast.Call)) and id(node) not in commands \
                and interpolated(node) and _SQL_TEXT.search(_literal_text(node)) \
                and region.line(node) not in sql_lines:
            sql_lines.add(region.line(node))
            yield from emit(node, "medium", "sql-injection",
                            "SQL text assembled by string formatting; make sure it never "
                            "reaches a query without parameters", 0.6)


def security_findings(views: list[FileView]) -> list[Finding]:
    """Injection, secrets, unsafe deserialisation, weak hashing and disabled TLS checks."""
    out = secret_findings(views)
    for view in views:
        for region in view.regions:
            out.extend(_security_tree(view, region))
    return rank(out + fallback_findings("security", views))


# --------------------------------------------------------------------------- code quality

SNAKE_CASE = re.compile(r"^_{0,2}[a-z][a-z0-9_]*_{0,2}$")
CAP_WORDS = re.compile(r"^_?[A-Z][A-Za-z0-9]*$")
FRAMEWORK_NAMES = re.compile(r"^(?:setUp|tearDown|setUpClass|tearDownClass|setUpModule|"
                             r"tearDownModule|asyncSetUp|asyncTearDown|visit_\w+|depart_\w+)$")
TODO = re.compile(r"#.*\b(TODO|FIXME|XXX|HACK)\b")
MIN_DUPLICATE_LENGTH = 30


def nesting_depth(node: ast.AST, depth: int = 0) -> tuple[int, ast.AST | None]:
    """Deepest chain of nested blocks inside a function (nested defs not counted)."""
    best: tuple[int, ast.AST | None] = (depth, None)
    for child in ast.iter_child_nodes(node):
        if isinstance(child, _FUNCS):
            continue
        if isinstance(child, _BLOCKS):
            inner = nesting_depth(child, depth + 1)
            candidate = (inner[0], inner[1] or child)
        else:
            candidate = nesting_depth(child, depth)
        if candidate[0] > best[0]:
            best = candidate
    return best


def _in_main_guard(path: AstPath) -> bool:
    return any(isinstance(p, ast.If) and "__main__" in ast.unparse(p.test) for p, _ in path)


def _quality_tree(view: FileView, region: Region) -> Iterator[Finding]:
    tree = region.tree

    def emit(number: int, severity: str, rule: str, message: str,
             confidence: float) -> Iterator[Finding]:
        if number in view.added:
            yield Finding(severity, view.path, number, rule, message, "code-quality", confidence)

    if region.start == 1 and view.is_new and not view.is_test and tree.body and \
            ast.get_docstring(tree) is None:
        yield from emit(1, "low", "missing-docstring", "new module has no docstring", 0.8)
    for node, path in walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            first, last = region.line(node), region.end_line(node)
            touched = any(first <= n <= last for n in view.added)
            nested = any(isinstance(p, (ast.FunctionDef, ast.AsyncFunctionDef)) for p, _ in path)
            public = not node.name.startswith("_")
            kind = "class" if isinstance(node, ast.ClassDef) else "function"
            if kind == "function" and touched:
                length = last - first + 1
                if length > MAX_FUNCTION_LINES:
                    severity = "high" if length > 2 * MAX_FUNCTION_LINES else "medium"
                    yield Finding(severity, view.path, first, "function-too-long",
                                  f"{node.name}() is {length} lines long (limit "
                                  f"{MAX_FUNCTION_LINES}); split it into named steps",
                                  "code-quality", 0.75)
                depth, deepest = nesting_depth(node)
                if depth > MAX_NESTING and deepest is not None:
                    yield Finding("medium", view.path, region.line(deepest), "deep-nesting",
                                  f"{node.name}() nests {depth} blocks deep (limit "
                                  f"{MAX_NESTING}); use early returns or helpers",
                                  "code-quality", 0.7)
            if public and not nested and not view.is_test and ast.get_docstring(node) is None:
                yield from emit(first, "low", "missing-docstring",
                                f"public {kind} {node.name} has no docstring", 0.8)
            pattern = CAP_WORDS if kind == "class" else SNAKE_CASE
            if not pattern.match(node.name) and not FRAMEWORK_NAMES.match(node.name):
                style = "CapWords" if kind == "class" else "snake_case"
                yield from emit(first, "low", "naming",
                                f"{kind} name {node.name!r} is not {style} (PEP 8)", 0.85)
        elif isinstance(node, ast.ExceptHandler):
            number = region.line(node)
            if node.type is None:
                yield from emit(number, "medium", "bare-except",
                                "bare except also catches KeyboardInterrupt/SystemExit and "
                                "hides the real error; catch the specific exception", 0.95)
            elif dotted(node.type) in {"Exception", "BaseException"} and all(
                    isinstance(s, (ast.Pass, ast.Continue)) or (
                        isinstance(s, ast.Expr) and _is_const(s.value, Ellipsis))
                    for s in node.body):
                yield from emit(number, "medium", "swallowed-exception",
                                "exception caught and silently ignored", 0.85)
        elif isinstance(node, ast.Call):
            name = dotted(node.func)
            if name in {"breakpoint", "pdb.set_trace", "ipdb.set_trace"}:
                yield from emit(region.line(node), "high", "debugger-left-in",
                                "debugger breakpoint left in the code", 0.95)
            elif name == "print" and not view.is_test and not _in_main_guard(path):
                yield from emit(region.line(node), "low", "print-debugging",
                                "print() in service code; use logging", 0.7)


def _patch_level_quality(views: list[FileView]) -> Iterator[Finding]:
    code = [v for v in views if v.language in {"python", "config"}]
    for view in code:
        for number, text in sorted(view.added.items()):
            if match := TODO.search(text):
                yield Finding("low", view.path, number, "todo-comment",
                              f"{match.group(1)} left in the change; track it in an issue",
                              "code-quality", 0.9, "regex")
    seen: dict[str, tuple[str, int]] = {}
    reported: set[str] = set()
    for view in code:
        if view.is_test or view.language != "python":
            continue
        for number, text in sorted(view.added.items()):
            line = text.strip()
            if len(line) < MIN_DUPLICATE_LENGTH or line.startswith(
                    ("#", "import ", "from ", "@", '"""', "'''")):
                continue
            if line in seen and line not in reported:
                reported.add(line)
                first_file, first_line = seen[line]
                yield Finding("low", view.path, number, "duplicated-lines",
                              f"same statement as {first_file}:{first_line}; extract a helper",
                              "code-quality", 0.65, "regex")
            seen.setdefault(line, (view.path, number))
    sources = [v for v in views if v.language == "python" and not v.is_test and v.code_lines]
    tests = [v for v in views if v.is_test and v.code_lines]
    source_lines = sum(len(v.code_lines) for v in sources)
    if sources and not tests and source_lines >= MIN_TESTED_SOURCE_LINES:
        largest = max(sources, key=lambda v: (len(v.code_lines), v.path))
        yield Finding("medium", largest.path, largest.code_lines[0], "missing-tests",
                      f"{source_lines} added source lines in {len(sources)} files and no test "
                      "file touched", "code-quality", 0.8, "regex")


def quality_findings(views: list[FileView]) -> list[Finding]:
    """Function size and nesting, error handling, leftovers, docs, naming, duplication, tests."""
    out = list(_patch_level_quality(views))
    for view in views:
        for region in view.regions:
            out.extend(_quality_tree(view, region))
    return rank(out + fallback_findings("code-quality", views))


# --------------------------------------------------------------------------- performance

DB_METHODS = {"execute", "executemany", "executescript", "query", "scalar", "scalars", "raw",
              "get_or_create", "filter_by"}
HTTP_CALL = re.compile(r"^(?:requests|httpx|session|client|http)\.(?:get|post|put|patch|delete|"
                       r"head|request)$|(?:^|\.)urlopen$")


def _kinds(func: ast.AST) -> dict[str, set[str]]:
    """What each name of a function is bound to: 'str', 'list' or 'other'."""
    kinds: dict[str, set[str]] = defaultdict(set)
    for name, entries in _assignments(func).items():
        for _, value in entries:
            if _is_str(value):
                kinds[name].add("str")
            elif isinstance(value, (ast.List, ast.ListComp)):
                kinds[name].add("list")
            else:
                kinds[name].add("other")
    return kinds


def _performance_tree(view: FileView, region: Region) -> Iterator[Finding]:
    tree = region.tree
    kinds_cache: dict[int, dict[str, set[str]]] = {}

    def kinds_of(path: AstPath) -> dict[str, set[str]]:
        scope = enclosing_function(path) or tree
        if id(scope) not in kinds_cache:
            kinds_cache[id(scope)] = _kinds(scope)
        return kinds_cache[id(scope)]

    def emit(node: ast.AST, severity: str, rule: str, message: str,
             confidence: float) -> Iterator[Finding]:
        if region.line(node) in view.added and not view.is_test:
            yield Finding(severity, view.path, region.line(node), rule, message, "performance",
                          confidence)

    for node, path in walk(tree):
        loops = enclosing_loops(path)
        if isinstance(node, (ast.For, ast.AsyncFor)):
            same = [outer for outer in loops if isinstance(outer, (ast.For, ast.AsyncFor))
                    and ast.dump(outer.iter) == ast.dump(node.iter)]
            if same:
                yield from emit(node, "medium", "nested-loop-same-collection",
                                f"nested loop over {ast.unparse(node.iter)} is O(n²); index it "
                                "by key in a dict or set", 0.75)
        if isinstance(node, ast.Call):
            name = dotted(node.func)
            method = name.rsplit(".", 1)[-1] if "." in name else ""
            where = "inside a loop" if loops else ""
            if loops and (method in DB_METHODS or ".objects." in name):
                yield from emit(node, "high", "query-in-loop",
                                f"{name}() runs once per iteration (N+1 queries); fetch the rows "
                                "in one query (JOIN or WHERE … IN)", 0.8)
            if loops and HTTP_CALL.search(name):
                yield from emit(node, "high", "http-in-loop",
                                f"{name}() makes one network round trip per iteration; batch or "
                                "cache the lookups", 0.8)
            if loops and name == "re.compile":
                yield from emit(node, "low", "regex-compile-in-loop",
                                "re.compile() on every iteration; hoist it to module level", 0.7)
            if name == "time.sleep" and not view.is_test:
                yield from emit(node, "medium", "sleep-call",
                                f"time.sleep() blocks the worker {where}".rstrip()
                                + "; back off asynchronously or let the caller retry", 0.75)
            if method in {"read", "readlines", "read_text", "read_bytes"} and not node.args:
                yield from emit(node, "medium" if loops else "low", "read-whole-file",
                                f"{method}() loads the whole file into memory {where}".rstrip()
                                + "; stream it if it can grow", 0.55)
        if loops and isinstance(node, ast.AugAssign) and isinstance(node.op, ast.Add) and \
                isinstance(node.target, ast.Name):
            if _is_str(node.value) or "str" in kinds_of(path).get(node.target.id, set()):
                yield from emit(node, "medium", "string-concat-in-loop",
                                f"{node.target.id} += … in a loop copies the string each time "
                                "(quadratic); collect parts and ''.join them", 0.7)
        if loops and isinstance(node, ast.Compare) and any(
                isinstance(op, (ast.In, ast.NotIn)) for op in node.ops):
            container = node.comparators[-1]
            if isinstance(container, ast.Name) and kinds_of(path).get(container.id) == {"list"}:
                yield from emit(node, "medium", "list-membership-in-loop",
                                f"`in {container.id}` scans a list on every iteration; use a set",
                                0.65)


def performance_findings(views: list[FileView]) -> list[Finding]:
    """Quadratic loops, queries/HTTP calls per iteration, hot-loop waste, blocking calls."""
    out: list[Finding] = []
    for view in views:
        for region in view.regions:
            out.extend(_performance_tree(view, region))
    fallback = [f for f in fallback_findings("performance", views)
                if not is_test_path(f.file)]
    return rank(out + fallback)


DETECTORS: dict[str, Callable[[list[FileView]], list[Finding]]] = {
    "security": security_findings,
    "code-quality": quality_findings,
    "performance": performance_findings,
}


# --------------------------------------------------------------------------- confidence


@dataclass(frozen=True)
class Coverage:
    """How much of the patch a perspective could analyse, and how deeply."""

    lines: int
    ast_lines: int
    regex_lines: int
    depth: float

    @property
    def factor(self) -> float:
        """0.6 + 0.4·depth: regex-only analysis still catches most issues."""
        return 0.6 + 0.4 * self.depth


def coverage(perspective: str, views: list[FileView]) -> Coverage:
    """Non-blank added lines in scope; depth weighs ast lines 1 and regex-only lines less."""
    ast_lines = regex_lines = 0
    for view in views:
        in_scope = view.language == "python" or (view.language == "config"
                                                 and perspective == "security")
        if not in_scope:
            continue
        for number in view.code_lines:
            if number in view.deep:
                ast_lines += 1
            else:
                regex_lines += 1
    lines = ast_lines + regex_lines
    depth = (ast_lines + REGEX_DEPTH[perspective] * regex_lines) / lines if lines else 0.0
    return Coverage(lines, ast_lines, regex_lines, round(depth, 4))


def evidence(findings: list[Finding], lines: int) -> float:
    """Reliability of the report itself.

    No findings: the detectors' recall on that many lines, 0.99^(1 + lines/100).
    Findings: severity-weighted mean over flagged lines of the noisy-OR of the precisions
    of the findings on that line (1 − Π(1 − pᵢ)), weights low 1 … critical 4.
    """
    if not findings:
        return RECALL_PER_100_LINES ** (1 + lines / 100)
    by_line: dict[tuple[str, int], list[Finding]] = defaultdict(list)
    for f in findings:
        by_line[(f.file, f.line)].append(f)
    total = weight_sum = 0.0
    for group in by_line.values():
        weight = max(SEVERITY_RANK[f.severity] for f in group)
        total += weight * (1 - math.prod(1 - f.confidence for f in group))
        weight_sum += weight
    return total / weight_sum


def verdict_of(findings: list[Finding]) -> str:
    """request-changes on any high/critical finding, comment on any other, else approve."""
    if any(f.severity in BLOCKING for f in findings):
        return "request-changes"
    return "comment" if findings else "approve"


def _counts(findings: list[Finding]) -> str:
    counts = Counter(f.severity for f in findings)
    return ", ".join(f"{counts[s]} {s}" for s in sorted(counts, key=lambda s: -SEVERITY_RANK[s]))


# --------------------------------------------------------------------------- agents


def run_perspective(perspective: str, task: str, data: Any,
                    context: dict | None = None) -> dict[str, Any]:
    """Run one perspective's detectors over the patch and score the report.

    confidence = (0.6 + 0.4·depth) × evidence, rounded to 3 places, where depth is the
    share of in-scope added lines analysed with a syntax tree (regex-only lines count
    REGEX_DEPTH[perspective]) and evidence is defined in :func:`evidence`. A patch with
    nothing in scope gets 0.5: there was nothing to judge.
    """
    views = build_views(load_patch(data, context))
    findings = DETECTORS[perspective](views)
    cov = coverage(perspective, views)
    verdict = verdict_of(findings)
    if cov.lines == 0:
        confidence, ev = 0.5, 0.0
    else:
        ev = evidence(findings, cov.lines)
        confidence = round(cov.factor * ev, 3)
    files = sorted({v.path for v in views})
    out_of_scope = sorted(v.path for v in views if not (
        v.language == "python" or (v.language == "config" and perspective == "security")))
    summary = (f"{perspective}: {len(findings)} finding(s)"
               + (f" ({_counts(findings)})" if findings else "")
               + f" in {cov.lines} added lines across {len(files)} file(s); {verdict}.")
    if findings:
        top = findings[0]
        summary += f" Most severe: {top.rule} at {top.file}:{top.line}."
    uncertainties = []
    if cov.regex_lines:
        uncertainties.append(f"{cov.regex_lines} added line(s) checked by regex only (hunk "
                             "did not parse on its own)")
    if out_of_scope:
        uncertainties.append("not analysed by this perspective: " + ", ".join(out_of_scope))
    heuristic = sorted({f.rule for f in findings if f.confidence < 0.7})
    if heuristic:
        uncertainties.append("heuristic rules fired (precision < 0.7): " + ", ".join(heuristic))
    uncertainties.append("only the diff hunks are visible, not the whole files")
    return {
        "value": {"perspective": perspective, "verdict": verdict,
                  "findings": [f.as_dict() for f in findings], "summary": summary},
        "confidence": confidence,
        "reasoning": (f"Analysed {cov.lines} added line(s): {cov.ast_lines} with a syntax tree, "
                      f"{cov.regex_lines} by regex only (depth {cov.depth:.2f}, coverage factor "
                      f"{cov.factor:.3f}); evidence {ev:.3f} from {len(findings)} finding(s); "
                      f"confidence = coverage × evidence = {confidence:.3f}."),
        "uncertainties": uncertainties,
        "metadata": {"perspective": perspective, "task": task, "files": files,
                     "lines": cov.lines, "ast_lines": cov.ast_lines,
                     "regex_lines": cov.regex_lines, "depth": cov.depth,
                     "coverage": round(cov.factor, 4), "evidence": round(ev, 4),
                     "formula": "confidence = (0.6 + 0.4*depth) * evidence"},
    }


def security(task: str, data: Any, context: dict | None = None) -> dict[str, Any]:
    """Security reviewer: injection (SQL, shell, eval), hard-coded secrets (format, name,
    entropy), unsafe deserialisation, weak password hashing, disabled TLS verification.

    confidence = (0.6 + 0.4·depth) × evidence (see :func:`run_perspective`, :func:`evidence`).
    """
    return run_perspective("security", task, data, context)


def quality(task: str, data: Any, context: dict | None = None) -> dict[str, Any]:
    """Code-quality reviewer: function length, nesting depth, bare/swallowed excepts,
    TODO/FIXME, print debugging and breakpoints, docstrings, PEP 8 naming, duplicated
    lines, and whether tests were touched.

    confidence = (0.6 + 0.4·depth) × evidence (see :func:`run_perspective`, :func:`evidence`).
    """
    return run_perspective("code-quality", task, data, context)


def performance(task: str, data: Any, context: dict | None = None) -> dict[str, Any]:
    """Performance reviewer: nested loops over one collection, queries/HTTP calls/regex
    compilation/string concatenation/list membership inside loops, sleeps, whole-file reads.

    confidence = (0.6 + 0.4·depth) × evidence (see :func:`run_perspective`, :func:`evidence`).
    """
    return run_perspective("performance", task, data, context)


# --------------------------------------------------------------------------- senior architect


@dataclass(frozen=True)
class Review:
    """A reviewer's report as received from the orchestrator."""

    perspective: str
    verdict: str
    findings: list[dict[str, Any]]
    confidence: float | None


def collect_reviews(obj: Any, wrapper_confidence: float | None = None,
                    depth: int = 0) -> list[Review]:
    """Find reviewer reports anywhere in ``obj`` (lists of agent results, ``reviews``,
    ``results``, legacy ``agentResults`` …); a report is a mapping with ``findings`` and a
    ``verdict`` or ``perspective``; its confidence is taken from the enclosing result."""
    if depth > 8:
        return []
    if isinstance(obj, (list, tuple)):
        return [r for item in obj for r in collect_reviews(item, None, depth + 1)]
    if not isinstance(obj, dict):
        return []
    conf = obj.get("confidence")
    conf = float(conf) if isinstance(conf, (int, float)) and not isinstance(conf, bool) \
        else wrapper_confidence
    if isinstance(obj.get("findings"), list) and ("verdict" in obj or "perspective" in obj):
        perspective = str(obj.get("perspective", "unknown"))
        if perspective == "senior-architect":
            return []
        return [Review(perspective, str(obj.get("verdict", "")),
                       [f for f in obj["findings"] if isinstance(f, dict)], conf)]
    found = []
    for key, value in obj.items():
        if key in {"patch", "diff"}:
            continue
        inherited = conf if key in {"value", "result"} else None
        found.extend(collect_reviews(value, inherited, depth + 1))
    return found


def _finding_key(item: dict[str, Any]) -> tuple[str, int, str] | None:
    try:
        return (str(item["file"]), int(item["line"]), str(item["rule"]))
    except (KeyError, TypeError, ValueError):
        return None


def senior_architect(task: str, data: Any, context: dict | None = None) -> dict[str, Any]:
    """Escalation reviewer: re-runs every perspective on the patch, confirms or rejects each
    finding the reviewers reported (``data.reviews``/``data.results`` or any nested agent
    results), de-duplicates by (file, line, rule), ranks by severity and decides.

    Decision rule (same verdict rule as the reviewers, over the confirmed findings):
      request-changes: P = 1 − Π(1 − pᵢ) over blocking findings — the chance that at least
                       one blocking issue is real (unanalysed code cannot make it wrong);
      comment:         P = coverage × (1 − Π(1 − pᵢ)) over all findings;
      approve:         P = coverage × 0.99^(1 + lines/100);
    with coverage the mean perspective coverage factor. Then
      confidence = min(0.99, max(P, best confidence of a reviewer with the same verdict))
                   × 0.98^min(#unconfirmed reviewer findings, 5).
    Without a patch it cannot re-check: it merges the reviewers' findings and reports their
    mean confidence.
    """
    reviews = collect_reviews(data)
    try:
        patch: str | None = load_patch(data, context)
    except (ValueError, FileNotFoundError):
        patch = None
    if patch is None and not reviews:
        raise ValueError("senior_architect needs a patch (patch / patch_file) or reviews")
    reported = {k: (r, item) for r in reviews for item in r.findings
                if (k := _finding_key(item)) is not None}

    if patch is None:
        merged = [Finding(str(item.get("severity", "low")) if item.get("severity") in SEVERITY_RANK
                          else "low", k[0], k[1], k[2], str(item.get("message", "")),
                          r.perspective, float(item.get("confidence", 0.5) or 0.5), "reported")
                  for k, (r, item) in reported.items()]
        findings = rank(merged)
        verdict = verdict_of(findings)
        known = [r.confidence for r in reviews if r.confidence is not None]
        confidence = round(sum(known) / len(known), 3) if known else 0.5
        return _architect_result(task, verdict, findings, confidence, reviews, [], [],
                                 ["no patch in the input: findings could not be re-checked"],
                                 {"rule": "mean reviewer confidence (unverified)"})

    views = build_views(patch)
    rerun = {p: DETECTORS[p](views) for p in PERSPECTIVES}
    findings = rank(f for fs in rerun.values() for f in fs)
    found_keys = {f.key for f in findings}
    unconfirmed = [dict(item, perspective=r.perspective) for k, (r, item) in sorted(
        reported.items()) if k not in found_keys]
    missed = [f for f in findings if f.key not in reported] if reviews else []
    verdict = verdict_of(findings)
    covs = [coverage(p, views) for p in PERSPECTIVES]
    lines = max(c.lines for c in covs)
    cov_factor = sum(c.factor for c in covs if c.lines) / max(1, sum(1 for c in covs if c.lines))
    blocking = [f for f in findings if f.severity in BLOCKING]
    if verdict == "request-changes":
        decision = 1 - math.prod(1 - f.confidence for f in blocking)
        rule = "noisy-OR over blocking findings"
    elif verdict == "comment":
        decision = cov_factor * (1 - math.prod(1 - f.confidence for f in findings))
        rule = "coverage × noisy-OR over all findings"
    else:
        decision = cov_factor * RECALL_PER_100_LINES ** (1 + lines / 100)
        rule = "coverage × recall"
    agreeing = [r.confidence for r in reviews if r.verdict == verdict and r.confidence is not None]
    confidence = min(ARCHITECT_CAP, max([decision] + agreeing))
    confidence *= UNCONFIRMED_PENALTY ** min(len(unconfirmed), 5)
    uncertainties = []
    if unconfirmed:
        uncertainties.append(f"{len(unconfirmed)} reviewer finding(s) could not be reproduced "
                             "and were dropped")
    if missing := sorted(set(PERSPECTIVES) - {r.perspective for r in reviews}):
        uncertainties.append("no review received for: " + ", ".join(missing)
                             + " (covered by the re-run)")
    uncertainties.append("only the diff hunks are visible, not the whole files")
    return _architect_result(task, verdict, findings, round(confidence, 3), reviews, unconfirmed,
                             missed, uncertainties,
                             {"rule": rule, "decision_probability": round(decision, 4),
                              "coverage": round(cov_factor, 4), "lines": lines,
                              "per_perspective": {p: len(fs) for p, fs in rerun.items()}})


def _architect_result(task: str, verdict: str, findings: list[Finding], confidence: float,
                      reviews: list[Review], unconfirmed: list[dict[str, Any]],
                      missed: list[Finding], uncertainties: list[str],
                      extra: dict[str, Any]) -> dict[str, Any]:
    blocking = [f for f in findings if f.severity in BLOCKING]
    summary = (f"senior architect: {verdict}; {len(findings)} confirmed finding(s)"
               + (f" ({_counts(findings)})" if findings else "")
               + (f"; must fix: " + "; ".join(f"{f.rule} at {f.file}:{f.line}"
                                              for f in blocking[:5]) if blocking else "")
               + ".")
    return {
        "value": {"perspective": "senior-architect", "verdict": verdict,
                  "findings": [f.as_dict() for f in findings], "summary": summary,
                  "reviewed": sorted({r.perspective for r in reviews}),
                  "confirmed": len(findings) - len(missed) if reviews else 0,
                  "unconfirmed": unconfirmed,
                  "missed_by_reviewers": [f.as_dict() for f in missed]},
        "confidence": confidence,
        "reasoning": (f"Re-ran all perspectives; {len(findings)} finding(s), "
                      f"{len(blocking)} blocking; {len(reviews)} review(s) received, "
                      f"{len(unconfirmed)} finding(s) not reproducible; decision by "
                      f"{extra.get('rule')} → confidence {confidence:.3f}."),
        "uncertainties": uncertainties,
        "metadata": {"task": task, **extra},
    }
