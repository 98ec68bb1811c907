"""`prism serve` under load: N concurrent orchestrations of the PR-review example.

Starts `prism serve` (a subprocess, on a free loopback port, with a fresh store) whose
agents are `simulated` stand-ins for examples/pr-review/agents.toml (same ids and
capabilities: security, code-quality, performance, senior-architect), then sends N
`POST /api/orchestrate?wait=S` requests with examples/pr-review/requirements.json at
once. A 429 is retried after its Retry-After (counted). Prints throughput, p50/p99
latency, and checks that every run completed and is in the store with its events.

Run from the project root:  python bench/serve_bench.py [--requests 50] [--latency-ms 50]
Exit status 1 when any orchestration is missing, failed, or not in the store.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bootstrap.store import PatternStore  # noqa: E402

EXAMPLE = ROOT / "examples" / "pr-review"


def simulated_agents(path: Path, latency_ms: float, jitter_ms: float) -> Path:
    """The PR-review agents with the same ids and capabilities, as simulated agents."""
    spec = tomllib.loads((EXAMPLE / "agents.toml").read_text(encoding="utf-8"))
    lines = []
    for i, (agent_id, table) in enumerate(spec["agents"].items()):
        lines += [f"[agents.{agent_id}]",
                  f"capabilities = {json.dumps(table['capabilities'])}",
                  'transport = "simulated"',
                  f"expertise = {table.get('expertise', 0.7)}",
                  f"seed = {i + 1}",
                  f"latency_ms = {latency_ms}",
                  f"jitter_ms = {jitter_ms}", ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=50, help="concurrent orchestrations (default 50)")
    ap.add_argument("--latency-ms", type=float, default=50.0, help="simulated agent latency")
    ap.add_argument("--jitter-ms", type=float, default=20.0)
    ap.add_argument("--max-concurrent", type=int, default=None,
                    help="the server's run slots (default: --requests)")
    ap.add_argument("--wait", type=float, default=120.0, help="?wait= seconds per request")
    ap.add_argument("--json", action="store_true", help="print one JSON object at the end")
    args = ap.parse_args()
    n = args.requests
    slots = args.max_concurrent or n

    tmp = Path(tempfile.mkdtemp(prefix="prism-serve-bench-"))
    agents = simulated_agents(tmp / "agents.toml", args.latency_ms, args.jitter_ms)
    store_path = tmp / "store.db"
    body = (EXAMPLE / "requirements.json").read_bytes()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k != "PRISM_API_TOKEN"}
    server = subprocess.Popen(
        [sys.executable, "-c", "from bootstrap.serve_cli import serve; serve()",
         "--port", str(port), "--agents", str(agents), "--store", str(store_path),
         "--max-concurrent", str(slots), "--log-level", "warning"],
        cwd=ROOT, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                print("prism serve did not start:", server.stderr.read().decode(), file=sys.stderr)
                return 1
            time.sleep(0.05)

        # One warm-up request composes and stores the pattern, as a deployed server would
        # have; its time is reported separately.
        t0 = time.perf_counter()
        warm = httpx.post(f"{url}/api/orchestrate?wait={args.wait}", content=body, timeout=args.wait + 30)
        warm_ms = (time.perf_counter() - t0) * 1000
        if warm.status_code != 200:
            print(f"warm-up failed: {warm.status_code} {warm.text}", file=sys.stderr)
            return 1

        results: list[dict] = [{} for _ in range(n)]
        barrier = threading.Barrier(n)
        limits = httpx.Limits(max_connections=n + 5, max_keepalive_connections=n + 5)
        client = httpx.Client(base_url=url, timeout=args.wait + 30, limits=limits)

        def one(i: int) -> None:
            barrier.wait()
            start = time.perf_counter()
            retries = 0
            while True:
                r = client.post(f"/api/orchestrate?wait={args.wait}", content=body)
                if r.status_code == 429:
                    retries += 1
                    time.sleep(float(r.headers.get("Retry-After", "1")))
                    continue
                break
            elapsed = time.perf_counter() - start
            data = r.json()
            results[i] = {"status": r.status_code, "latency": elapsed, "retries": retries,
                          "id": (data.get("execution") or {}).get("id") or data.get("id"),
                          "cached": (data.get("pattern") or {}).get("cached"),
                          "confidence": data.get("confidence"),
                          "fallback_taken": data.get("fallback_taken")}

        threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        wall0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - wall0
        client.close()
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()

    ok = [r for r in results if r.get("status") == 200]
    latencies = [r["latency"] * 1000 for r in ok]
    ids = [r["id"] for r in results if r.get("id")]
    with PatternStore(store_path) as store:
        records = {i: store.get_execution(i) for i in ids}
        completed_in_store = sum(1 for rec in records.values() if rec and rec.status == "completed")
        with_final_event = sum(
            1 for i in ids
            if (evs := store.events(i)) and evs[-1].kind == "status"
            and evs[-1].data.get("status") == "completed")
        total_executions = len(store.list_executions(limit=None))
    summary = {
        "requests": n, "server_slots": slots,
        "agent_latency_ms": args.latency_ms, "agent_jitter_ms": args.jitter_ms,
        "warmup_ms": round(warm_ms, 1),
        "wall_s": round(wall, 3),
        "throughput_per_s": round(len(ok) / wall, 2) if wall else None,
        "latency_p50_ms": round(percentile(latencies, 0.50), 1),
        "latency_p99_ms": round(percentile(latencies, 0.99), 1),
        "latency_mean_ms": round(statistics.fmean(latencies), 1) if latencies else None,
        "completed_http_200": len(ok),
        "retries_after_429": sum(r.get("retries", 0) for r in results),
        "completed_in_store": completed_in_store,
        "with_final_event": with_final_event,
        "executions_in_store": total_executions,
        "all_cached": all(r.get("cached") for r in ok),
        "fallback_taken": sum(1 for r in ok if r.get("fallback_taken")),
    }
    lost = n - completed_in_store
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"prism serve: {n} concurrent orchestrations of examples/pr-review "
              f"(simulated agents, {args.latency_ms:g}±{args.jitter_ms:g} ms; {slots} run slots)")
        print(f"  warm-up (compose + run): {summary['warmup_ms']} ms")
        print(f"  wall {summary['wall_s']} s, throughput {summary['throughput_per_s']} orchestrations/s")
        print(f"  latency p50 {summary['latency_p50_ms']} ms, p99 {summary['latency_p99_ms']} ms, "
              f"mean {summary['latency_mean_ms']} ms")
        print(f"  HTTP 200: {len(ok)}/{n}; 429 retries: {summary['retries_after_429']}; "
              f"pattern reused by all: {summary['all_cached']}; fallback taken: {summary['fallback_taken']}")
        print(f"  in the store: {completed_in_store}/{n} completed, {with_final_event}/{n} with their "
              f"final event; {total_executions} executions in total (incl. warm-up)")
        print("  OK: no execution lost" if lost == 0 and len(ok) == n else f"  FAIL: {lost} lost")
    return 0 if lost == 0 and len(ok) == n else 1


if __name__ == "__main__":
    sys.exit(main())
