"""Fan-out benchmark: N agents of L ms latency in `parallel`, in-process and over loopback HTTP.

Prints wall time / L (target <= 1.5 for 100 agents of 100 ms) and the per-call
overhead of an in-process (python transport) agent call made from Prism.
Run from the project root:  python bench/fanout_bench.py [--agents 100] [--latency-ms 100]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bootstrap.agents import load_registry  # noqa: E402
from bootstrap.host import Host, run_with_host  # noqa: E402

FANOUT = """
import { parallel } from "primitives/index"
let ids = Object.keys(agents)
let results = parallel(ids.map(id => ({agent: agents[id], task: "probe", data: {n: 1}})))
results.length
"""

SERIAL = """
let total = 0
for (let i = 0; i < N; i++) {
  let r = await agents.echo.analyze("echo", i)
  total = total + r.value
}
total
"""


def echo(task, data, context=None):
    return {"value": data, "confidence": 0.9}


def _registry(tmp: Path, text: str):
    path = tmp / "agents.toml"
    path.write_text(text, encoding="utf-8")
    return load_registry(path)


def run(source: str, registry, inputs=None, runs: int = 1) -> tuple[float, object]:
    """Median wall time of ``runs`` runs on one warmed-up host (agent loop started,
    grammar loaded, HTTP connections pooled: the steady state a service sees)."""
    host = Host(registry)
    try:
        run_with_host(source, host=host, filename="<bench>", inputs=inputs)      # warm-up, untimed
        times = []
        value = None
        for _ in range(runs):
            t0 = time.perf_counter()
            value = run_with_host(source, host=host, filename="<bench>", inputs=inputs).value
            times.append(time.perf_counter() - t0)
        return statistics.median(times), value
    finally:
        host.close()


class _Server(ThreadingHTTPServer):
    request_queue_size = 256      # socketserver defaults to 5: a burst of 100 would wait on SYN retries


class _Slow(BaseHTTPRequestHandler):
    latency = 0.1

    def do_POST(self):  # noqa: N802
        n = int(self.headers.get("content-length", 0))
        self.rfile.read(n)
        time.sleep(self.latency)
        body = json.dumps({"value": "ok", "confidence": 0.8}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):  # quiet
        pass


SMALL_PRIMITIVES = """
import { parallel, race } from "primitives/execution"
let s = 0
for (let k = 0; k < 300; k++) { s += parallel([() => k, () => 1]).length + race([() => 1, () => 2]) }
s
"""


def serve(latency_ms: float) -> None:
    _Slow.latency = latency_ms / 1000
    server = _Server(("127.0.0.1", 0), _Slow)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        serve(float(sys.argv[2]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--agents", type=int, default=100)
    ap.add_argument("--latency-ms", type=float, default=100.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--calls", type=int, default=300, help="sequential calls for the overhead figure")
    args = ap.parse_args()
    n, lat = args.agents, args.latency_ms
    tmp = Path(tempfile.mkdtemp(prefix="prism-bench-"))

    sim = "".join(f'[agents.a{i}]\ncapabilities = ["probe"]\ntransport = "simulated"\nseed = {i}\n'
                  f"latency_ms = {lat}\n\n" for i in range(n))
    reg = _registry(tmp, sim)
    wall = run(FANOUT, reg, runs=args.runs)[0]
    print(f"simulated: {n} agents x {lat:g} ms in parallel: {wall * 1000:.1f} ms "
          f"(wall / latency = {wall * 1000 / lat:.2f}; median of {args.runs})")

    # the HTTP agents run in their own process, as real services would (sharing this
    # process's GIL would measure the server's CPU time, not the client's overlap)
    import subprocess
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(lat)], stdout=subprocess.PIPE, text=True)
    port = int(server.stdout.readline())
    http = "".join(f'[agents.h{i}]\ncapabilities = ["probe"]\ntransport = "http"\n'
                   f'url = "http://127.0.0.1:{port}/analyze"\ntimeout = 30\n\n' for i in range(n))
    reg_http = _registry(tmp, http)
    wall = run(FANOUT, reg_http, runs=args.runs)[0]
    print(f"loopback HTTP: {n} agents x {lat:g} ms in parallel: {wall * 1000:.1f} ms "
          f"(wall / latency = {wall * 1000 / lat:.2f}; median of {args.runs})")
    server.terminate()
    server.wait()

    (tmp / "echo_agent.py").write_text("def echo(task, data, context=None):\n"
                                       "    return {'value': data, 'confidence': 0.9}\n", encoding="utf-8")
    reg_py = _registry(tmp, '[agents.echo]\ncapabilities = ["echo"]\ntransport = "python"\n'
                            'target = "echo_agent:echo"\n')
    calls = args.calls
    elapsed, value = run(SERIAL, reg_py, inputs={"N": calls})
    baseline, _ = run(SERIAL.replace("await agents.echo.analyze(\"echo\", i)", "{value: i}"), reg_py,
                      inputs={"N": calls})
    per_call = (elapsed - baseline) / calls * 1e6
    print(f"in-process agent call from Prism: {per_call:.0f} us per call "
          f"({calls} sequential awaited calls; loop overhead subtracted)")

    # the fixed cost of a small primitive: how quickly the coordinator notices completions
    import kernel
    kernel.evaluate(SMALL_PRIMITIVES, filename="<bench>")           # modules parsed and cached
    t0 = time.perf_counter()
    kernel.evaluate(SMALL_PRIMITIVES, filename="<bench>")
    per_pair = (time.perf_counter() - t0) / 300 * 1e6
    print(f"small primitives: parallel of 2 + race of 2 instant tasks: {per_pair:.0f} us per pair "
          f"(300 pairs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
