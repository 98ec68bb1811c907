"""Incident-triage agents: a log classifier that finds the likely root cause in a log excerpt,
a flaky twin that fails its first call(s) per process (to exercise retry and the circuit
breaker), and a conservative on-call fallback. Deterministic; no canned answers."""

from __future__ import annotations

import os
import re
import threading
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

ERROR_LEVELS = frozenset({"ERROR", "FATAL", "CRITICAL", "CRIT", "EMERG", "ALERT"})
WARN_LEVELS = frozenset({"WARN", "WARNING"})
CAUSE_WINDOW_BEFORE = timedelta(minutes=15)
CAUSE_WINDOW_AFTER = timedelta(seconds=60)
CHANGE_WINDOW = timedelta(minutes=30)
UNLINKED_FACTOR = 0.35
OFF_WINDOW_FACTOR = 0.5


@dataclass(frozen=True)
class Category:
    """A family of log messages: a possible cause, a symptom, or a change event."""

    name: str
    kind: str  # "cause" | "symptom" | "change"
    pattern: re.Pattern[str]
    description: str
    keywords: frozenset[str] = frozenset()
    actions: tuple[str, ...] = ()


def _cat(name: str, kind: str, pattern: str, description: str, keywords: str = "",
         actions: tuple[str, ...] = ()) -> Category:
    return Category(name, kind, re.compile(pattern, re.I), description,
                    frozenset(keywords.split()), actions)


# First match wins: change events and reporters before causes, causes before generic symptoms.
CATEGORIES = (
    _cat("change", "change",
         r"rollout (?:started|complete)|\bdeploy(?:ed|ment|ing)?\b|config (?:loaded|changed|reload)"
         r"|\bchanged:|feature flag", "deploy or configuration change"),
    _cat("alert", "symptom", r"\bFIRING\b", "monitoring alert firing"),
    _cat("probe-failure", "symptom",
         r"(?:readiness|liveness) probe failed|back-off restarting|CrashLoopBackOff",
         "health checks failing / containers restarting"),
    _cat("db-connection-pool-exhaustion", "cause",
         r"QueuePool limit|pool (?:exhausted|saturated)|connection pool.*(?:timeout|exhausted)"
         r"|remaining connection slots|too many (?:clients|connections)",
         "the service's database connection pool is exhausted: requests wait for a connection "
         "until they time out", "db pool connection connections size overflow",
         ("restore the previous pool size (or scale the pool with the replica count)",
          "look for long transactions or leaked connections holding the pool")),
    _cat("database-unavailable", "cause",
         r"could not connect to server|connection refused.*(?:5432|3306|27017)|OperationalError"
         r"|database .*(?:down|unavailable)",
         "the database is unreachable", "db database postgres connection",
         ("check database health and failover status",)),
    _cat("out-of-memory", "cause", r"OutOfMemory|OOMKilled|Cannot allocate memory|MemoryError",
         "processes run out of memory", "memory heap limit",
         ("raise the memory limit or roll back the release that grew memory use",)),
    _cat("disk-full", "cause", r"No space left on device|disk (?:is )?full",
         "a disk is full", "disk space volume", ("free or grow the volume",)),
    _cat("tls-certificate", "cause", r"certificate (?:has )?expired|CERTIFICATE_VERIFY_FAILED|x509",
         "TLS certificate problem", "tls certificate cert",
         ("renew or re-deploy the certificate",)),
    _cat("dns-failure", "cause",
         r"Name or service not known|NXDOMAIN|Temporary failure in name resolution|no such host",
         "DNS resolution fails", "dns resolve host", ("check the resolver and DNS records",)),
    _cat("rate-limited", "cause", r"\b429\b|rate limit|Too Many Requests",
         "a dependency rate-limits the service", "rate limit quota",
         ("reduce call volume or raise the quota",)),
    _cat("dependency-unreachable", "cause", r"connection refused|ECONNREFUSED|unreachable",
         "a dependency refuses connections", "connection refused host",
         ("check the dependency's health and network path",)),
    _cat("application-exception", "cause",
         r"Traceback|\bpanic:|segfault|NullPointerException|unhandled exception",
         "the application crashes on an exception", "exception error crash",
         ("inspect the stack trace; roll back the release if it is new",)),
    _cat("upstream-timeout", "symptom",
         r"upstream timed out|Gateway Timeout|\b504\b|deadline exceeded|ReadTimeout",
         "callers time out waiting for the service"),
    _cat("http-5xx", "symptom", r"\s5\d\d\s|\bstatus(?:code)?[=:]\s*5\d\d",
         "requests fail with 5xx"),
    _cat("slow-response", "symptom", r"slow response|latency=\d{4,}ms", "responses are slow"),
)
BY_NAME = {c.name: c for c in CATEGORIES}

_LINE_FORMATS = (
    re.compile(r"^(?P<ts>\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?Z?)\s+(?P<level>[A-Z]+)\s+"
               r"(?P<service>[\w.\-]+)\s+(?P<message>.*)$"),
    re.compile(r"^(?P<ts>\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?Z?)\s+(?P<level>[A-Z]+)\s+"
               r"\[(?P<service>[^\]]+)\]\s+(?P<message>.*)$"),
)


@dataclass
class Entry:
    """One log record (continuation lines such as stack traces are folded in)."""

    line: int
    time: datetime
    level: str
    service: str
    message: str
    category: str = "unclassified"

    @property
    def is_error(self) -> bool:
        """ERROR or worse."""
        return self.level in ERROR_LEVELS

    @property
    def is_warning(self) -> bool:
        """WARN or WARNING."""
        return self.level in WARN_LEVELS


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace(",", ".").replace("Z", "+00:00").replace(" ", "T"))


def parse_log(text: str) -> list[Entry]:
    """Parse log records; lines without a header are appended to the previous record."""
    entries: list[Entry] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        match = next((m for fmt in _LINE_FORMATS if (m := fmt.match(raw.strip()))), None)
        if match is None:
            if entries:
                entries[-1].message += "\n" + raw.strip()
            continue
        level = match["level"].upper()
        entries.append(Entry(number, _parse_time(match["ts"]), level, match["service"],
                             match["message"].strip()))
    for entry in entries:
        entry.category = classify(entry.message)
    return entries


def classify(message: str) -> str:
    """Name of the first category whose pattern matches the message."""
    return next((c.name for c in CATEGORIES if c.pattern.search(message)), "unclassified")


def kind_of(entry: Entry) -> str:
    """'cause', 'symptom', 'change' or 'unclassified'."""
    category = BY_NAME.get(entry.category)
    return category.kind if category is not None else "unclassified"


def signature(message: str) -> str:
    """Message with request ids, addresses, numbers and quoted values masked."""
    text = message.split("\n", 1)[0]
    text = re.sub(r"\[req=[^\]]*\]\s*", "", text)
    text = re.sub(r'"[^"]*"', '"…"', text)
    text = re.sub(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b", "<ip>", text)
    text = re.sub(r"\b(?=[0-9a-f]*\d)[0-9a-f]{6,}\b", "<id>", text)
    text = re.sub(r"(?<![A-Za-z])\d+(?:\.\d+)?", "<n>", text)
    return re.sub(r"\s+", " ", text).strip()


def mentioned_services(entry: Entry, known: set[str]) -> set[str]:
    """Known service names appearing in the message (pods, service=…, callbacks)."""
    return {s for s in known if s != entry.service and re.search(
        rf"(?<![\w-]){re.escape(s)}(?![\w])", entry.message)}


# --------------------------------------------------------------------------- data loading

_LOG_TEXT_KEYS = ("log", "logs", "log_text", "text")
_LOG_FILE_KEYS = ("log_file", "logFile", "path")


def _read_log_file(name: str) -> str:
    path = Path(name)
    if not path.is_absolute():
        path = HERE / path
    if not path.is_file():
        raise FileNotFoundError(f"log file not found: {path}")
    return path.read_text(encoding="utf-8", errors="replace")


def _find_log(obj: Any, depth: int = 0) -> str | None:
    if depth > 6:
        return None
    if isinstance(obj, str):
        if any(fmt.match(line.strip()) for line in obj.splitlines()[:20] for fmt in _LINE_FORMATS):
            return obj
        return _read_log_file(obj.strip()) if obj.strip().endswith(".log") else None
    if isinstance(obj, dict):
        for key in _LOG_TEXT_KEYS:
            value = obj.get(key)
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                return "\n".join(value)
            if isinstance(value, str) and value.strip():
                return value
        for key in _LOG_FILE_KEYS:
            if isinstance(obj.get(key), str) and obj[key].strip():
                return _read_log_file(obj[key].strip())
        children: list[Any] = [v for v in obj.values() if isinstance(v, (dict, list))]
    elif isinstance(obj, list):
        children = obj
    else:
        return None
    for child in children:
        if (found := _find_log(child, depth + 1)) is not None:
            return found
    return None


def load_log(data: Any, context: dict | None = None) -> str:
    """The log text from ``data`` (or ``context``): log text, a list of lines, ``log``,
    ``log_file`` (relative names resolve against this folder), at any nesting depth."""
    for source in (data, context):
        found = _find_log(source)
        if found is not None:
            return found
    raise ValueError("no log found: pass log text, {'log': <text>} or {'log_file': 'incident.log'}")


# --------------------------------------------------------------------------- analysis


@dataclass
class Candidate:
    """A possible root cause and the evidence for it."""

    cause: str
    errors: int
    warnings: int
    onset: datetime
    services: set[str]
    volume: float = 0.0
    timing: float = 0.0
    link: float = 0.0

    @property
    def score(self) -> float:
        """volume × timing × link."""
        return self.volume * self.timing * self.link


@dataclass
class Triage:
    """Result of :func:`analyse`."""

    entries: list[Entry]
    errors: list[Entry]
    symptoms: list[Entry]
    incident_start: datetime | None
    affected: Counter[str]
    candidates: list[Candidate]
    trigger: Entry | None
    changes: list[Entry]
    explained: list[Entry]
    severity: str


def analyse(text: str) -> Triage:
    """Find the likely root cause of the incident in a log excerpt.

    1. classify every record (cause / symptom / change categories);
    2. incident start = first ERROR-level symptom (else first symptom, else first error);
       affected services = services named by symptom records (their own service if they
       name none);
    3. each cause category with WARN+ records is a candidate, scored
       volume × timing × link: volume = its weight (errors + 0.5·warnings) over all cause
       weight; timing = 1 if its onset lies in [start − 15 min, start + 60 s], else 0.5;
       link = 1 if it touches an affected service, else 0.35;
    4. trigger = the change event in the 30 minutes before the cause's onset that shares
       most words with the cause (ties: the latest);
    5. explained errors = the cause's errors plus symptom errors on affected services at
       or after its onset.
    """
    entries = parse_log(text)
    known = {e.service for e in entries}
    errors = [e for e in entries if e.is_error]
    symptoms = [e for e in entries if kind_of(e) == "symptom"]
    symptom_errors = [e for e in symptoms if e.is_error]
    first = symptom_errors or symptoms or errors
    start = min((e.time for e in first), default=None)
    affected: Counter[str] = Counter()
    for e in symptoms:
        affected.update(sorted(mentioned_services(e, known) or {e.service}))

    grouped: dict[str, list[Entry]] = defaultdict(list)
    for e in entries:
        if kind_of(e) == "cause" and (e.is_error or e.is_warning):
            grouped[e.category].append(e)
    candidates = []
    for name, group in grouped.items():
        services = {e.service for e in group} | set().union(
            *(mentioned_services(e, known) for e in group))
        candidates.append(Candidate(name, sum(e.is_error for e in group),
                                    sum(e.is_warning for e in group),
                                    min(e.time for e in group), services))
    total_weight = sum(c.errors + 0.5 * c.warnings for c in candidates)
    for c in candidates:
        c.volume = (c.errors + 0.5 * c.warnings) / total_weight
        in_window = start is None or (start - CAUSE_WINDOW_BEFORE <= c.onset
                                      <= start + CAUSE_WINDOW_AFTER)
        c.timing = 1.0 if in_window else OFF_WINDOW_FACTOR
        c.link = 1.0 if (c.services & set(affected)) or not affected else UNLINKED_FACTOR
    candidates.sort(key=lambda c: (-c.score, c.onset, c.cause))

    trigger, changes, explained = None, [], []
    if candidates:
        top = candidates[0]
        scope = top.services | set(affected)
        changes = [e for e in entries if e.category == "change"
                   and top.onset - CHANGE_WINDOW <= e.time <= top.onset
                   and ({e.service} | mentioned_services(e, known)) & scope]
        words = BY_NAME[top.cause].keywords
        if changes:
            trigger = max(changes, key=lambda e: (
                len(words & set(re.findall(r"[a-z]+", e.message.lower()))), e.time))
        explained = [e for e in errors if e.category == top.cause or (
            e in symptom_errors and e.time >= top.onset
            and (mentioned_services(e, known) or {e.service}) & set(affected))]
    critical_alert = any(e.category == "alert" and "critical" in e.message.lower()
                         for e in symptoms)
    if critical_alert or len(symptom_errors) >= 20:
        severity = "SEV1"
    elif len(symptom_errors) >= 5:
        severity = "SEV2"
    else:
        severity = "SEV3"
    return Triage(entries, errors, symptoms, start, affected, candidates, trigger, changes,
                  explained, severity)


def _top_signatures(entries: list[Entry], limit: int = 5) -> list[dict[str, Any]]:
    counts = Counter((signature(e.message), e.category) for e in entries)
    return [{"signature": sig, "category": cat, "count": n}
            for (sig, cat), n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]]


def _entry(e: Entry | None) -> dict[str, Any] | None:
    if e is None:
        return None
    return {"line": e.line, "time": e.time.isoformat(), "service": e.service, "message": e.message}


def classifier_confidence(t: Triage) -> tuple[float, dict[str, float]]:
    """explained × (0.6 + 0.3·margin + 0.1·trigger), margin = (s₁ − s₂)/s₁.

    explained = share of ERROR records the chosen cause accounts for (itself plus the
    symptoms it precedes); margin = how far the best candidate beats the runner-up (1 with
    a single candidate); trigger = 1 when a related change precedes the cause. Without any
    cause candidate only symptoms are visible: 0.3 × share of errors that are symptoms.
    """
    if not t.candidates:
        share = len([e for e in t.errors if e in t.symptoms]) / len(t.errors) if t.errors else 0.0
        return round(0.3 * share, 3), {"explained": share, "margin": 0.0, "trigger": 0.0}
    s1 = t.candidates[0].score
    s2 = t.candidates[1].score if len(t.candidates) > 1 else 0.0
    margin = (s1 - s2) / s1 if s1 > 0 else 0.0
    explained = len(t.explained) / len(t.errors) if t.errors else 0.0
    trig = 1.0 if t.trigger is not None else 0.0
    confidence = explained * (0.6 + 0.3 * margin + 0.1 * trig)
    return round(confidence, 3), {"explained": round(explained, 4), "margin": round(margin, 4),
                                  "trigger": trig}


def log_classifier(task: str, data: Any, context: dict | None = None) -> dict[str, Any]:
    """Classify an incident from its log: count error signatures, order them in time, and
    name the likely root cause, its trigger, severity and first actions (see :func:`analyse`).

    confidence = explained × (0.6 + 0.3·margin + 0.1·trigger) (see
    :func:`classifier_confidence`).
    """
    t = analyse(load_log(data, context))
    confidence, parts = classifier_confidence(t)
    symptoms = Counter(e.category for e in t.symptoms if e.is_error or e.is_warning)
    if t.candidates:
        top = t.candidates[0]
        category = BY_NAME[top.cause]
        service = max(top.services & set(t.affected) or top.services,
                      key=lambda s: (t.affected[s], s))
        actions = list(category.actions)
        if t.trigger is not None:
            actions.insert(0, f"revert the change at {t.trigger.time.strftime('%H:%M:%S')}: "
                              f"{t.trigger.service}: {t.trigger.message}")
        cause, description, onset = top.cause, category.description, top.onset.isoformat()
    else:
        service = t.affected.most_common(1)[0][0] if t.affected else None
        cause, description, onset = "unknown", "only symptoms are visible in this excerpt", None
        actions = ["widen the log window or add the dependencies' logs"]
    unexplained = [e for e in t.errors if e not in t.explained]
    summary = (f"{t.severity}: {cause} on {service}"
               + (f" since {t.candidates[0].onset.strftime('%H:%M:%S')}" if t.candidates else "")
               + (f", after '{t.trigger.message}'" if t.trigger else "")
               + f"; {len(t.explained)}/{len(t.errors)} errors explained.")
    return {
        "value": {
            "cause": cause, "description": description, "service": service, "onset": onset,
            "severity": t.severity, "summary": summary, "trigger": _entry(t.trigger),
            "changes": [_entry(e) for e in t.changes],
            "incident_start": t.incident_start.isoformat() if t.incident_start else None,
            "affected_services": dict(t.affected.most_common()),
            "symptoms": dict(sorted(symptoms.items())),
            "top_signatures": _top_signatures(t.errors),
            "candidates": [{"cause": c.cause, "score": round(c.score, 4), "errors": c.errors,
                            "warnings": c.warnings, "onset": c.onset.isoformat(),
                            "services": sorted(c.services)} for c in t.candidates],
            "explained_errors": len(t.explained), "total_errors": len(t.errors),
            "unexplained": [_entry(e) for e in unexplained],
            "recommended_actions": actions,
        },
        "confidence": confidence,
        "reasoning": (f"{len(t.entries)} records, {len(t.errors)} errors; "
                      f"{len(t.candidates)} cause candidate(s); best {cause} explains "
                      f"{parts['explained']:.0%} of errors with margin {parts['margin']:.2f}"
                      f"{' and a preceding change' if t.trigger else ''}."),
        "uncertainties": ([f"{len(unexplained)} error(s) not explained by the cause: "
                           + "; ".join(sorted({signature(e.message) for e in unexplained}))]
                          if unexplained else [])
                         + ["only this log excerpt was read; metrics and traces were not"],
        "metadata": {"agent": "log-classifier", "task": task, "records": len(t.entries),
                     **parts, "formula": "explained * (0.6 + 0.3*margin + 0.1*trigger)"},
    }


# --------------------------------------------------------------------------- flaky twin

_flaky_calls = 0
_flaky_lock = threading.Lock()
DEFAULT_FAIL_FIRST = 1


class UpstreamUnavailable(ConnectionError):
    """The (simulated) log-index upstream of the flaky classifier is down."""


def _fail_first(context: dict | None) -> int:
    if isinstance(context, dict) and isinstance(context.get("flakyFailFirst"), int):
        return max(0, context["flakyFailFirst"])
    return max(0, int(os.environ.get("FLAKY_FAIL_FIRST", DEFAULT_FAIL_FIRST)))


def reset_flaky() -> None:
    """Reset the per-process call counter (tests, repeated runs in one process)."""
    global _flaky_calls
    with _flaky_lock:
        _flaky_calls = 0


def flaky_classifier(task: str, data: Any, context: dict | None = None) -> dict[str, Any]:
    """The log classifier behind an unreliable upstream: the first N calls in this process
    (N = context["flakyFailFirst"], else $FLAKY_FAIL_FIRST, else 1) raise
    :class:`UpstreamUnavailable`; later calls return exactly what :func:`log_classifier`
    returns (same confidence formula), tagged with the call number.
    """
    global _flaky_calls
    with _flaky_lock:
        _flaky_calls += 1
        call = _flaky_calls
    fail_first = _fail_first(context)
    if call <= fail_first:
        raise UpstreamUnavailable(
            f"upstream unavailable: log index returned 503 (flaky-classifier call {call}; this "
            f"agent fails its first {fail_first} call(s) per process)")
    result = log_classifier(task, data, context)
    result["metadata"].update({"agent": "flaky-classifier", "call": call,
                               "failed_calls_before": fail_first})
    return result


# --------------------------------------------------------------------------- on-call fallback

SEVERITY_ESCALATION = {"SEV3": "SEV2", "SEV2": "SEV1", "SEV1": "SEV1"}
SYMPTOMS_FOR_FULL_CONFIDENCE = 20


def _failures(obj: Any, depth: int = 0) -> list[str]:
    if depth > 6:
        return []
    if isinstance(obj, dict):
        own = [str(obj["error"])] if isinstance(obj.get("error"), str) else []
        return own + [m for v in obj.values() for m in _failures(v, depth + 1)]
    if isinstance(obj, list):
        return [m for v in obj for m in _failures(v, depth + 1)]
    return []


def oncall_human(task: str, data: Any, context: dict | None = None) -> dict[str, Any]:
    """Conservative fallback standing in for the on-call engineer: never names a root cause,
    pages a human, escalates severity one level, freezes deploys and proposes rolling back
    any change that preceded the errors. Candidate causes are listed, unranked by belief.

    confidence (in the decision to escalate, not in a diagnosis)
        = 0.5 + 0.3 × min(1, customer-facing symptom errors / 20); 0.5 without a log.
    """
    failures = _failures(data)
    try:
        text: str | None = load_log(data, context)
    except (ValueError, FileNotFoundError):
        text = None
    if text is None:
        return {
            "value": {"decision": "page-oncall", "severity": "SEV2", "cause": "unconfirmed",
                      "candidate_causes": [], "actions": ["page the on-call engineer",
                                                          "freeze deploys until triaged"],
                      "summary": "no log available: paging on-call"},
            "confidence": 0.5,
            "reasoning": "No log in the input; escalation is the only safe decision.",
            "uncertainties": ["no log was provided"] + failures,
            "metadata": {"agent": "oncall-human", "task": task},
        }
    t = analyse(text)
    symptom_errors = [e for e in t.symptoms if e.is_error]
    severity = SEVERITY_ESCALATION[t.severity] if t.errors else "SEV3"
    services = [s for s, _ in t.affected.most_common()] or sorted({e.service for e in t.errors})
    recent_changes = [e for e in t.entries if e.category == "change" and t.incident_start
                      and t.incident_start - CHANGE_WINDOW <= e.time <= t.incident_start]
    actions = [f"page the on-call engineer for {', '.join(services[:3]) or 'the platform'}",
               "open an incident channel and freeze deploys"]
    if recent_changes:
        actions.append("roll back the changes made before the errors: "
                       + "; ".join(f"{e.service}: {e.message}" for e in recent_changes))
    confidence = round(0.5 + 0.3 * min(1.0, len(symptom_errors) / SYMPTOMS_FOR_FULL_CONFIDENCE), 3)
    decision = "page-oncall" if t.errors else "monitor"
    return {
        "value": {"decision": decision, "severity": severity, "cause": "unconfirmed",
                  "candidate_causes": sorted(c.cause for c in t.candidates),
                  "affected_services": services, "actions": actions,
                  "summary": (f"{severity}: {decision}; {len(t.errors)} errors, "
                              f"{len(symptom_errors)} customer-facing; cause unconfirmed.")},
        "confidence": confidence,
        "reasoning": (f"Conservative escalation: {len(symptom_errors)} customer-facing error(s) "
                      f"in the log; severity raised from {t.severity} to {severity}."),
        "uncertainties": ["root cause not diagnosed by a human yet"]
                         + [f"automated triage failed: {m}" for m in failures],
        "metadata": {"agent": "oncall-human", "task": task,
                     "formula": "0.5 + 0.3 * min(1, symptom_errors / 20)"},
    }
