"""Serving benchmark: our app between the HTTP server's floor and the peers, side by side.

All servers run at the same time on free loopback ports, each a single uvicorn process (uvloop +
httptools, access log off) pinned to core 0; ``wrk`` runs pinned to core 1 and loads one server at
a time, the servers taking turns (``--repeat`` rounds; medians compared, so every server sees the
same moments of a shared machine). Servers (``benchmarks/baseline_app.py``):

* ``floor``: uvicorn + a constant-answer ASGI app (reads the body, sends a fixed answer): what
  the HTTP server costs per request, the limit;
* ``floor-proto``: the same constant answer from our server's protocol (``http_server``'s path
  for the hot POSTs, /predict and V2 infer, which skips uvicorn's ASGI cycle): the floor of
  that path;
* ``lean``: FastAPI + orjson + onnxruntime on the same ONNX file, validating nothing;
* ``tutorial``: pydantic + pandas + the pickled scikit-learn pipeline;
* ``winequality``: ``python -m winequality.serving`` on the bundle, full validation, metrics on,
  payload logging on (to a real ``winequality drift serve`` on core 1 under ``SCHED_IDLE``, so it
  only gets the CPU time wrk leaves idle).

Scenarios: single-row and 100-row ``/predict`` at ``--connections``, single-row at one connection
(latency), and single-row V2 ``infer`` as JSON tensors and with the binary tensor extension. The
CPU time each server used per request (``/proc``: user + system, other tenants excluded) is
printed for every scenario. Before the load, a parity pass sends every wine of a sample one at a
time (``/predict``, V2 JSON, V2 binary) and in 100-row batches, and compares each answer with the
bundle's ONNX model run in this process. ``--profile DIR`` then samples our server with py-spy
under each scenario's load and prints where its time goes (``uv run --with py-spy``).

The V2 bars are weighed apart, on our server alone, in ``--paired-rounds`` A-B-A rounds (/predict
right before and after each V2 run): a few percent decide them, and the host drifts more than that
between the main table's runs of one app. Their verdict comes with the 95 % interval of the rounds'
median: "undecided" when it holds 1 (``--paired-duration`` shortens the rounds' runs, so that more
of them fit).

Targets (issue 13): single-row req/s >= 0.5x floor; 100-row batches >= 2x lean; V2 JSON and binary
>= /predict; p99 at one connection <= 2x the floor's; cold start <= 1.5 s, RSS <= 150 MB; zero
failed requests, also under load with a model swap every 5 s; every answer equal to in-process ONNX.

    uv run python benchmarks/serving.py [--short] [--duration 10] [--repeat 3] [--profile DIR]

Needs ``wrk`` (Debian: apt-get install wrk) and ``taskset`` (util-linux).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pandas as pd
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.bundles import train_model, write_model_bundle

from winequality import artifacts
from winequality.contract import schema
from winequality.data.ingest import read_uci_dir
from winequality.process import ManagedProcess, free_port

ROOT = Path(__file__).resolve().parents[1]
SERVER_CORE = "0"
CLIENT_CORE = "1"
LUA = """\
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
{headers}local f = assert(io.open("{body}", "rb"))
wrk.body = f:read("*a")
f:close()
"""


V2_INFER = f"/v2/models/{schema.MODEL_NAME}/infer"


def lua_script(body: Path, headers: dict[str, str] | None = None) -> str:
    """A wrk script POSTing ``body`` (JSON unless ``headers`` set another content type)."""
    extra = "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in (headers or {}).items())
    return LUA.format(body=body, headers=extra)


@dataclass
class Run:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int


@dataclass
class Server:
    name: str
    process: ManagedProcess
    url: str
    cold_start_s: float
    cold_start_cpu_s: float
    """CPU time the server used until ready: the cold start without the other tenants' share."""


def wines_body(wines: pd.DataFrame, rows: int, seed: int) -> bytes:
    sample = wines.sample(rows, random_state=seed)
    records = sample[[*schema.FEATURE_NAMES, schema.WINE_TYPE]].to_dict(orient="records")
    return json.dumps({"wines": records}).encode()


def post(url: str, body: bytes) -> dict[str, Any]:
    request = urllib.request.Request(
        url, data=body, headers={"content-type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        result: dict[str, Any] = json.loads(response.read())
        return result


def start(name: str, cmd: list[str], ready_path: str, logs: Path, env: dict[str, str]) -> Server:
    port = free_port()
    cmd = ["taskset", "-c", SERVER_CORE, *cmd, "--port", str(port)]
    process = ManagedProcess(name, cmd, logs / f"{name}.log", env=env, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    begin = time.perf_counter()
    process.start()
    deadline = begin + 60
    while time.perf_counter() < deadline:
        try:
            with urllib.request.urlopen(url + ready_path, timeout=1) as response:
                if response.status == 200:
                    elapsed = time.perf_counter() - begin
                    return Server(name, process, url, elapsed, cpu_seconds(process.pid))
        except OSError:
            if not process.alive():
                break
        time.sleep(0.005)
    process.stop()
    raise RuntimeError(f"{name} did not become ready:\n{process.log_tail()}")


def median_pair(pairs: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cold_start(name: str, cmd: list[str], logs: Path, env: dict[str, str]) -> tuple[float, float]:
    """(wall, CPU) seconds from spawning the server to its first 200 on /health/ready."""
    server = start(name.replace(" ", "_"), cmd, "/health/ready", logs, env)
    server.process.stop()
    return server.cold_start_s, server.cold_start_cpu_s


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * _UNITS[unit]


def wrk(url: str, script: Path, connections: int, duration: float) -> Run:
    cmd = [
        "taskset", "-c", CLIENT_CORE, "wrk", "-t1", f"-c{connections}", f"-d{duration:g}s",
        "--latency", "-s", str(script), url,
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    socket_errors = re.search(r"Socket errors:.*", out)
    errors = int(non2xx.group(1)) if non2xx else 0
    if socket_errors:
        errors += sum(int(n) for n in re.findall(r"\d+", socket_errors.group(0)))
    return Run(rate, p50, p99, errors)


def sched(pid: int) -> tuple[float, float, int]:
    """(seconds on CPU, seconds runnable but waiting for a CPU, involuntary switches)."""
    on_cpu, waiting, _ = Path(f"/proc/{pid}/schedstat").read_text().split()
    status = Path(f"/proc/{pid}/status").read_text()
    preempted = int(re.search(r"nonvoluntary_ctxt_switches:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    return int(on_cpu) / 1e9, int(waiting) / 1e9, preempted


def latency_buckets(url: str) -> dict[float, float]:
    """Cumulative counts of the app's own /predict latency histogram, by upper bound."""
    with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
        text = response.read().decode()
    buckets = {}
    for labels, count in re.findall(
        r"^winequality_http_request_duration_seconds_bucket\{(.*)\} (\S+)$", text, re.M
    ):
        found = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        if found.get("route") == "/predict":
            buckets[float(found["le"])] = float(count)
    return buckets


def p99_bound(before: dict[float, float], after: dict[float, float]) -> float:
    """Smallest bucket bound holding 99 % of the requests observed between two scrapes."""
    delta = sorted((le, after[le] - before.get(le, 0.0)) for le in after)
    total = delta[-1][1]
    return next(le for le, n in delta if n >= 0.99 * total)


def rss_mb(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) of a process in MB."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    hwm = int(re.search(r"VmHWM:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    return rss / 1024, hwm / 1024


def add_load_options(parser: argparse.ArgumentParser) -> None:
    """Options every wrk-driven benchmark takes: the data, and how long each run lasts."""
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "wine-quality"))
    parser.add_argument("--short", action="store_true", help="3 s per run instead of --duration")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")


def load_setup(args: argparse.Namespace) -> tuple[float, pd.DataFrame]:
    """(seconds per run, the real wines) after checking the load tools are installed."""
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is required (Debian: apt-get install {tool})")
    return (3.0 if args.short else args.duration), read_uci_dir(Path(args.data))


def v2_bodies(wine: dict[str, Any]) -> tuple[bytes, bytes, int]:
    """(V2 JSON request, V2 binary request, its JSON header's length) for one wine."""
    inputs: list[dict[str, Any]] = [
        {"name": n, "datatype": "FP32", "shape": [1, 1], "data": [wine[n]]}
        for n in schema.FEATURE_NAMES
    ]
    inputs.append(
        {
            "name": schema.WINE_TYPE,
            "datatype": "BYTES",
            "shape": [1, 1],
            "data": [wine[schema.WINE_TYPE]],
        }
    )
    as_json = json.dumps({"inputs": inputs}).encode()
    raw = b""
    header_inputs = []
    for tensor in inputs:
        if tensor["datatype"] == "FP32":
            chunk = np.asarray(tensor["data"], dtype="<f4").tobytes()
        else:
            text = tensor["data"][0].encode()
            chunk = len(text).to_bytes(4, "little") + text
        raw += chunk
        meta = {k: v for k, v in tensor.items() if k != "data"}
        header_inputs.append({**meta, "parameters": {"binary_data_size": len(chunk)}})
    header = json.dumps({"inputs": header_inputs}).encode()
    return as_json, header + raw, len(header)


@dataclass
class Scenario:
    path: str
    body: str
    connections: int
    servers: tuple[str, ...]
    headers: dict[str, str] = field(default_factory=dict)


APPS = ("floor", "floor-proto", "lean", "tutorial", "winequality")
OURS = "winequality"
BEFORE = "before"
"""``--before``: an earlier version of our app, run beside it."""


class Parity:
    """Each answer of our app against the bundle's ONNX model run in this process."""

    def __init__(self, bundle: Path, url: str) -> None:
        self.session = ort.InferenceSession(
            str(bundle / artifacts.MODEL_FILE), providers=["CPUExecutionProvider"]
        )
        self.input = self.session.get_inputs()[0].name
        host, port = url.removeprefix("http://").split(":")
        self.connection = HTTPConnection(host, int(port), timeout=10)
        self.checked: Counter[str] = Counter()
        self.mismatches: Counter[str] = Counter()

    def reference(self, wines: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        matrix = np.column_stack(
            [
                wines[list(schema.FEATURE_NAMES)].to_numpy(np.float32),
                (wines[schema.WINE_TYPE] == "white").to_numpy(np.float32),
            ]
        ).astype(np.float32)
        scores = self.session.run(None, {self.input: matrix})[0].reshape(-1)
        quality = np.clip(scores, schema.QUALITY_MIN, schema.QUALITY_MAX).astype(np.float32)
        return quality, np.rint(quality).astype(np.int64)

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
        self.connection.request("POST", path, body, {"content-type": "application/json", **headers})
        response = self.connection.getresponse()
        text = response.read()
        if response.status != 200:
            raise RuntimeError(f"{path}: {response.status} {text[:200]!r}")
        result: dict[str, Any] = json.loads(text)
        return result

    def check(
        self,
        what: str,
        got_q: list[float],
        got_c: list[int],
        ref: tuple[np.ndarray, np.ndarray],
        exact: bool,
    ) -> None:
        quality, klass = ref
        for q, c, rq, rc in zip(got_q, got_c, quality.tolist(), klass.tolist(), strict=True):
            self.checked[what] += 1
            # /predict answers scores rounded to 4 decimals; V2 answers the FP32 scores as such.
            close = q == rq if exact else abs(q - rq) <= 5e-5 + 1e-9
            if not close or c != rc:
                self.mismatches[what] += 1

    def predict(self, wines: pd.DataFrame) -> None:
        records = wines[[*schema.FEATURE_NAMES, schema.WINE_TYPE]].to_dict(orient="records")
        answer = self.post("/predict", json.dumps({"wines": records}).encode(), {})
        predictions = answer["predictions"]
        what = "/predict single" if len(wines) == 1 else f"/predict {len(wines)}-row"
        self.check(
            what, [p["quality"] for p in predictions], [p["quality_class"] for p in predictions],
            self.reference(wines), exact=False,
        )  # fmt: skip

    def v2(self, wine: pd.DataFrame) -> None:
        as_json, binary, header_length = v2_bodies(wine.to_dict(orient="records")[0])
        ref = self.reference(wine)
        for what, body, headers in (
            ("V2 JSON", as_json, {}),
            ("V2 binary", binary, {
                "content-type": "application/octet-stream",
                "inference-header-content-length": str(header_length),
            }),
        ):  # fmt: skip
            outputs = {o["name"]: o["data"] for o in self.post(V2_INFER, body, headers)["outputs"]}
            self.check(
                what, outputs[schema.OUTPUT_QUALITY], outputs[schema.OUTPUT_CLASS], ref, exact=True
            )


def parity_pass(bundle: Path, url: str, wines: pd.DataFrame, rows: int) -> Parity:
    parity = Parity(bundle, url)
    sample = wines.sample(rows, random_state=3)
    for i in range(rows):
        one = sample.iloc[i : i + 1]
        parity.predict(one)
        parity.v2(one)
    for i in range(0, rows - 99, 100):
        parity.predict(sample.iloc[i : i + 100])
    parity.connection.close()
    return parity


def metric_total(url: str, name: str, label: str = "") -> float:
    with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(
        float(value)
        for labels, value in re.findall(rf"^{name}(\{{.*\}})? (\S+)$", text, re.M)
        if label in labels
    )


def start_detector(
    tmp: Path, timeout: float = 90, env: dict[str, str] | None = None
) -> tuple[ManagedProcess, str]:
    """The drift detector on ``tmp/reference.parquet``, on the client's core under SCHED_IDLE
    (it only gets the time wrk leaves, as on a machine of its own), ready; and its URL. ``env``:
    settings added to this process's environment."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    detector = ManagedProcess(
        "detector",
        ["taskset", "-c", CLIENT_CORE, "chrt", "--idle", "0", sys.executable, "-m",
         "winequality.cli", "drift", "serve", "--reference", str(tmp / "reference.parquet"),
         "--port", str(port)],
        tmp / "detector.log",
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        own_session=False,
    ).start()  # fmt: skip
    try:
        detector.wait_ready(url=f"{url}/health/ready", timeout=timeout)
    except BaseException:
        detector.stop()
        raise
    return detector, url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_load_options(parser)
    parser.add_argument("--connections", type=int, default=16, help="for the throughput runs")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of runs (medians kept)")
    parser.add_argument(
        "--paired-rounds",
        type=int,
        default=5,
        help="A-B-A rounds of our /predict around each V2 scenario, for the V2 bars",
    )
    parser.add_argument(
        "--paired-duration",
        type=int,  # wrk takes whole seconds
        help="seconds per wrk run of the A-B-A rounds (default: --duration); shorter runs, more "
        "rounds: each V2 run lies closer to its /predict neighbours, and the interval narrows",
    )
    parser.add_argument("--cold-starts", type=int, default=3, help="starts timed (median kept)")
    parser.add_argument("--parity-rows", type=int, default=300, help="wines of the parity pass")
    parser.add_argument(
        "--swap-duration", type=float, default=30.0, help="seconds of load with model swaps"
    )
    parser.add_argument("--swap-every", type=float, default=5.0, help="seconds between swaps")
    parser.add_argument("--profile", type=Path, help="py-spy our server under load, into DIR")
    parser.add_argument("--only", nargs="*", default=None, help="scenarios to run (default: all)")
    parser.add_argument(
        "--before",
        type=Path,
        help="a src/ tree of an earlier commit (git archive REV src | tar -x -C DIR; pass "
        "DIR/src): its app runs in every scenario beside ours, as 'before'",
    )
    args = parser.parse_args()
    duration, wines = load_setup(args)
    tmp = Path(tempfile.mkdtemp(prefix="wineq-bench-"))
    servers: dict[str, Server] = {}
    processes: list[ManagedProcess] = []
    try:
        # One model for all apps: the tutorial pickles the very pipeline the bundle exports.
        model = train_model(wines)
        bundle = write_model_bundle(tmp / "bundle", model, version="bench")
        other = write_model_bundle(tmp / "bundle-2", model, version="bench-2")
        (tmp / "model.pkl").write_bytes(pickle.dumps(model))
        wines.sample(1000, random_state=0).to_parquet(tmp / "reference.parquet")
        one = wines.sample(1, random_state=1)
        v2_json, v2_binary, v2_header = v2_bodies(
            one[[*schema.FEATURE_NAMES, schema.WINE_TYPE]].to_dict(orient="records")[0]
        )
        bodies = {
            "single": wines_body(wines, 1, 1),
            "batch": wines_body(wines, 100, 2),
            "v2_json": v2_json,
            "v2_binary": v2_binary,
        }
        for kind, body in bodies.items():
            (tmp / f"{kind}.json").write_bytes(body)
        apps = (*APPS, BEFORE) if args.before is not None else APPS
        everyone = apps
        # floor-proto too: the protocol path's cost of V2's larger bodies, beside /predict's.
        v2_servers = ("floor", "floor-proto", OURS)
        v2_servers += (BEFORE,) if args.before is not None else ()
        scenarios = {
            "single": Scenario("/predict", "single", args.connections, everyone),
            "batch": Scenario("/predict", "batch", args.connections, everyone),
            "latency": Scenario("/predict", "single", 1, everyone),
            "v2 JSON": Scenario(V2_INFER, "v2_json", args.connections, v2_servers),
            "v2 binary": Scenario(
                V2_INFER, "v2_binary", args.connections, v2_servers,
                {"Content-Type": "application/octet-stream",
                 "Inference-Header-Content-Length": str(v2_header)},
            ),
        }  # fmt: skip
        if args.only:
            scenarios = {k: v for k, v in scenarios.items() if k in args.only}
        scripts: dict[str, Path] = {}
        for name, scenario in scenarios.items():
            scripts[name] = tmp / f"{name.replace(' ', '_')}.lua"
            scripts[name].write_text(lua_script(tmp / f"{scenario.body}.json", scenario.headers))

        detector, detector_url = start_detector(tmp)
        processes.append(detector)

        env = dict(
            os.environ,
            BASELINE_MODEL=str(tmp / "model.pkl"),
            LEAN_MODEL=str(bundle / artifacts.MODEL_FILE),
            WINEQ_ADMIN_TOKEN=TOKEN,
            WINEQ_DETECTOR_URL=detector_url,
            WINEQ_FEEDBACK_DB=str(tmp / "feedback.sqlite"),
        )
        uvicorn_flags = ["--loop", "uvloop", "--http", "httptools", "--no-access-log", "--factory"]
        for name, factory, ready in (
            ("floor", "constant", "/health"),
            ("lean", "lean", "/health"),
            ("tutorial", "tutorial", "/health"),
        ):
            cmd = [
                sys.executable,
                "-m",
                "uvicorn",
                f"benchmarks.baseline_app:{factory}",
                *uvicorn_flags,
            ]
            servers[name] = start(name, cmd, ready, tmp, env)
        proto_cmd = [sys.executable, "-m", "benchmarks.baseline_app"]
        servers["floor-proto"] = start("floor-proto", proto_cmd, "/health", tmp, env)
        serve_args = ["--model-dir", str(bundle), "--log-level", "warning"]
        entries = {
            "python -m winequality.serving": [sys.executable, "-m", "winequality.serving"],
            "winequality serve": [sys.executable, "-m", "winequality.cli", "serve"],
        }
        ours_cmd = [*entries["python -m winequality.serving"], *serve_args]
        servers[OURS] = ours = start(OURS, ours_cmd, "/health/ready", tmp, env)
        if args.before is not None:
            before_env = dict(env, PYTHONPATH=str(args.before.resolve()))
            servers[BEFORE] = start(BEFORE, ours_cmd, "/health/ready", tmp, before_env)

        cold: dict[str, tuple[float, float] | None] = {}
        for entry, cmd in entries.items():
            try:
                cold[entry] = median_pair(
                    [
                        cold_start(entry, [*cmd, *serve_args], tmp, env)
                        for _ in range(args.cold_starts)
                    ]
                )
            except RuntimeError as exc:  # e.g. the root CLI broken by a half-finished stage
                print(f"cold start of {entry!r} failed: {str(exc).splitlines()[-1]}")
                cold[entry] = None

        for peer in ("lean", "tutorial"):
            for kind in ("single", "batch"):
                ref = post(servers[peer].url + "/predict", bodies[kind])["predictions"]
                got = post(ours.url + "/predict", bodies[kind])["predictions"]
                diff = max(abs(a["quality"] - b["quality"]) for a, b in zip(ref, got, strict=True))
                print(f"same model check, {peer}, {kind}: max |quality difference| {diff:.1e}")
        parity = parity_pass(bundle, ours.url, wines, args.parity_rows)
        print("parity with in-process ONNX (answers checked / differing):")
        for what, n in parity.checked.items():
            print(f"  {what}: {n} / {parity.mismatches[what]}")
        # Before any load: under load the payload logger's buffer (up to payload_queue_size
        # exchanges, a 100-row one ~30 kB) grows with the throughput whenever the detector lags.
        warm = {name: rss_mb(s.process.pid)[0] for name, s in servers.items()}
        print(
            "RSS MB after start and the parity pass: "
            + ", ".join(f"{k} {v:.0f}" for k, v in warm.items())
        )

        runs: dict[str, dict[str, list[Measured]]] = {
            name: {server: [] for server in scenario.servers}
            for name, scenario in scenarios.items()
        }
        for _ in range(args.repeat):
            for name, scenario in scenarios.items():
                for server in scenario.servers:
                    runs[name][server].append(
                        measure(
                            servers[server],
                            scenario.path,
                            scripts[name],
                            scenario.connections,
                            duration,
                        )
                    )
        paired = paired_rounds(
            ours, scenarios, scripts, args.paired_duration or duration, args.paired_rounds
        )
        memory = {name: rss_mb(s.process.pid) for name, s in servers.items()}
        sent = metric_total(ours.url, "winequality_payloads_sent_total")
        dropped = metric_total(ours.url, "winequality_payloads_dropped_total")
        report(runs, servers, memory, cold, duration, args, apps, paired)
        print(f"\npayload logging: {sent:,.0f} events sent to the detector, {dropped:,.0f} dropped")
        if args.profile is not None:
            args.profile.mkdir(parents=True, exist_ok=True)
            for name, scenario in scenarios.items():
                if scenario.connections == 1:
                    continue
                profile(ours, scenario.path, scripts[name], scenario.connections, duration,
                        args.profile / f"{name.replace(' ', '_')}.txt", name)  # fmt: skip
        swap_duration = min(args.swap_duration, duration) if args.short else args.swap_duration
        if swap_duration <= 0:  # --swap-duration 0: no run under swaps (wrk refuses -d0s)
            return
        swaps = swap_under_load(
            ours.url, scripts.get("single", next(iter(scripts.values()))), args.connections,
            swap_duration, args.swap_every, [other, bundle],
        )  # fmt: skip
        print(
            f"\nunder load (c={args.connections}, {swap_duration:g} s) with a model swap every "
            f"{args.swap_every:g} s: {swaps.run.requests_per_s:,.0f} req/s, "
            f"{swaps.run.errors} failed requests (target 0), {swaps.accepted}/{swaps.attempted} "
            f"swaps accepted, versions served: {', '.join(swaps.versions)}"
        )
    finally:
        for server in servers.values():
            server.process.stop()
        for process in processes:
            process.stop()
        shutil.rmtree(tmp, ignore_errors=True)


@dataclass(frozen=True)
class Measured:
    run: Run
    cpu_us: float
    """The server's own CPU time (user + system, /proc) per answered request."""


def measure(server: Server, path: str, script: Path, connections: int, duration: float) -> Measured:
    before = cpu_seconds(server.process.pid)
    run = wrk(server.url + path, script, connections, duration)
    used = cpu_seconds(server.process.pid) - before
    return Measured(run, used / max(run.requests_per_s * duration, 1.0) * 1e6)


PAIRED: tuple[str, ...] = ("v2 JSON", "v2 binary")
"""The scenarios whose bar is a ratio to our own single-row /predict (``paired_rounds``)."""


def _label(scenario: str) -> str:
    """A V2 scenario's name as its bar reads: "v2 JSON" -> "V2 JSON"."""
    return scenario.replace("v2", "V2", 1)


@dataclass(frozen=True)
class Paired:
    """One A-B-A round of a scenario against /predict: its run over the mean of the /predict
    runs right before and after it, by req/s and by CPU time per request."""

    requests_per_s: float
    by_cpu: float


def paired_rounds(
    ours: Server,
    scenarios: dict[str, Scenario],
    scripts: dict[str, Path],
    duration: float,
    rounds: int,
) -> dict[str, list[Paired]]:
    """Our server alone, /predict around each V2 scenario in turn (/predict, V2 JSON, /predict,
    V2 binary, /predict), ``rounds`` times: each V2 run against the /predict runs a few seconds
    either side of it (why: the module's docstring)."""
    names = [name for name in PAIRED if name in scenarios]
    if "single" not in scenarios or not names or rounds < 1:
        return {}
    single = scenarios["single"]

    def predict() -> Measured:
        return measure(ours, single.path, scripts["single"], single.connections, duration)

    paired: dict[str, list[Paired]] = {name: [] for name in names}
    for _ in range(rounds):
        before = predict()
        for name in names:
            scenario = scenarios[name]
            run = measure(ours, scenario.path, scripts[name], scenario.connections, duration)
            after = predict()
            rate = (before.run.requests_per_s + after.run.requests_per_s) / 2
            cpu = (before.cpu_us + after.cpu_us) / 2
            paired[name].append(Paired(run.run.requests_per_s / rate, cpu / run.cpu_us))
            before = after
    return paired


# Where a sample's time goes: the first category one of its frames matches (py-spy frames read
# "function (file:line)"); the endpoint's frames are in most stacks, so it comes late.
CATEGORIES: tuple[tuple[str, str], ...] = (
    ("idle: waiting for a request", r"epoll_pwait"),
    ("onnxruntime run", r"onnxruntime|InferenceSession|_BoundRun\.run"),
    ("payload logging", r"payload_logger"),
    ("metrics", r"metrics\.py|prometheus_client"),
    ("recent requests", r"recent\.py"),
    ("post-processing", r"postprocess|predictor\.py"),
    ("request parsing + validation", r"parsers\.py|features\.py|_decode\.py|read_body|loads"),
    ("request id", r"request_id|uuid"),
    ("response send", r"send_json|\(send\)|send \(|_HeadWithBody"),
    ("our endpoint, other", r"serving/(hot|app)\.py|serving/routes"),
    ("uvicorn + httptools", r"uvicorn|httptools"),
)


def summarize(raw: Path, top: int = 12) -> list[str]:
    """py-spy raw (collapsed) stacks of the event loop's thread -> the share of samples per
    category, and the frames with the most samples of their own."""
    per_category: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if "Server.run (uvicorn" not in stack:  # another thread (anyio's idle workers)
            continue
        frames = stack.split(";")
        count = int(count_text)
        total += count
        own[frames[-1]] += count
        category = next(
            (c for c, pattern in CATEGORIES if any(re.search(pattern, f) for f in frames)),
            "event loop, sockets, interpreter",
        )
        per_category[category] += count
    if not total:
        return ["no samples"]
    lines = [f"{n / total:5.1%} {c}" for c, n in per_category.most_common()]
    lines.append("frames with the most samples of their own:")
    lines += [f"  {n / total:5.1%} {frame[:110]}" for frame, n in own.most_common(top)]
    return lines


def profile(
    server: Server, path: str, script: Path, connections: int, duration: float, out: Path, name: str
) -> None:
    """py-spy on ``server`` while wrk loads ``path``; prints the summary.

    Python frames only, sampled without pausing the process: ``--native`` unwinding stopped the
    server for long enough to cut its throughput several times and skewed the attribution.
    """
    if shutil.which("py-spy") is None:
        print("py-spy not found: uv run --with py-spy python benchmarks/serving.py --profile DIR")
        return
    spy = subprocess.Popen(
        ["py-spy", "record", "--nonblocking", "--format", "raw", "--rate", "500", "--duration",
         f"{duration + 1:g}", "--pid", str(server.process.pid), "--output", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(0.5)
    before = cpu_seconds(server.process.pid)
    run = wrk(server.url + path, script, connections, duration)
    used = cpu_seconds(server.process.pid) - before
    spy.wait(60)
    print(
        f"\nprofile of {name} (py-spy, {run.requests_per_s:,.0f} req/s while sampled, "
        f"{used / max(run.requests_per_s * duration, 1) * 1e6:.0f} us CPU/request; {out}):"
    )
    for line in summarize(out):
        print("  " + line)


TOKEN = "bench-admin-token"  # a throwaway token for a loopback server


@dataclass
class SwapRun:
    run: Run
    attempted: int
    accepted: int
    versions: list[str]


def swap_under_load(
    url: str, script: Path, connections: int, duration: float, every: float, bundles: list[Path]
) -> SwapRun:
    """wrk loads the app while a thread swaps its model through /admin/reload every ``every`` s."""
    outcome: dict[str, Any] = {"attempted": 0, "accepted": 0, "versions": []}
    stop = threading.Event()

    def swapper() -> None:
        i = 0
        while not stop.wait(every):
            body = json.dumps({"model_dir": str(bundles[i % len(bundles)])}).encode()
            request = urllib.request.Request(
                url + "/admin/reload",
                data=body,
                method="POST",
                headers={"content-type": "application/json", "authorization": f"Bearer {TOKEN}"},
            )
            outcome["attempted"] += 1
            with urllib.request.urlopen(request, timeout=10) as response:
                if response.status == 200:
                    outcome["accepted"] += 1
            with urllib.request.urlopen(url + "/metadata", timeout=10) as response:
                outcome["versions"].append(json.loads(response.read())["model"]["version"])
            i += 1

    thread = threading.Thread(target=swapper, daemon=True)
    thread.start()
    try:
        run = wrk(url + "/predict", script, connections, duration)
    finally:
        stop.set()
        thread.join(30)
    return SwapRun(run, outcome["attempted"], outcome["accepted"], outcome["versions"])


def report(
    runs: dict[str, dict[str, list[Measured]]],
    servers: dict[str, Server],
    memory: dict[str, tuple[float, float]],
    cold: dict[str, tuple[float, float] | None],
    duration: float,
    args: argparse.Namespace,
    apps: tuple[str, ...] = APPS,
    paired: dict[str, list[Paired]] | None = None,
) -> None:
    """The table of medians, then the bars; a V2 bar from its A-B-A rounds (``paired_rounds``)
    when it has them, else from the table's medians."""
    paired = paired or {}

    def med(scenario: str, server: str, what: str) -> float:
        got = runs.get(scenario, {}).get(server, [])
        if not got:
            return float("nan")
        values = [getattr(m.run, what) if what != "cpu_us" else m.cpu_us for m in got]
        return statistics.median(values)

    print(
        f"\nserver pinned to core {SERVER_CORE}, wrk to core {CLIENT_CORE}, {duration:g} s per "
        f"run, {args.repeat} round(s), medians; {os.cpu_count()} cores"
    )
    header = ("scenario", *apps)
    rows: list[tuple[str, ...]] = []
    for scenario in runs:
        unit = "rows/s" if scenario == "batch" else "req/s"
        scale = 100 if scenario == "batch" else 1
        rows.append((f"{scenario} {unit}", *(
            "-" if (v := med(scenario, a, "requests_per_s")) != v else f"{v * scale:,.0f}"
            for a in apps
        )))  # fmt: skip
        rows.append((f"{scenario} CPU us/request", *(
            "-" if (v := med(scenario, a, "cpu_us")) != v else f"{v:,.0f}" for a in apps
        )))  # fmt: skip
    if "latency" in runs:
        for q in ("p50_ms", "p99_ms"):
            rows.append(
                (f"latency {q[:3]} ms (c=1)", *(f"{med('latency', a, q):.3f}" for a in apps))
            )
    rows.append(("RSS MB (now / peak)", *("{:.0f} / {:.0f}".format(*memory[a]) for a in apps)))
    rows.append(("failed requests", *(
        str(sum(m.run.errors for s in runs.values() for m in s.get(a, []))) for a in apps
    )))  # fmt: skip
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    for entry, times in cold.items():
        shown = "failed" if times is None else "{:.2f} s wall / {:.2f} s CPU".format(*times)
        print(f"cold start to ready ({entry}): {shown} (target <= 1.5 s)")

    def ratio(a: tuple[str, str], b: tuple[str, str], what: str = "requests_per_s") -> float:
        return med(*a, what) / med(*b, what)

    bars = [
        ("single /predict vs floor", ("single", OURS), ("single", "floor"), ">= 0.5", 0.5, False),
        ("single vs floor-proto", ("single", OURS), ("single", "floor-proto"), "", None, False),
        ("100-row /predict vs lean", ("batch", OURS), ("batch", "lean"), ">= 2", 2.0, False),
        ("single /predict vs lean", ("single", OURS), ("single", "lean"), "", None, False),
        ("single /predict vs tutorial", ("single", OURS), ("single", "tutorial"), "", None, False),
        *(
            (f"{_label(name)} vs /predict", (name, OURS), ("single", OURS), ">= 1", 1.0, False)
            for name in PAIRED
            if name not in paired
        ),
        (
            "V2 JSON vs /predict, floor-proto",
            ("v2 JSON", "floor-proto"),
            ("single", "floor-proto"),
            "",
            None,
            False,
        ),
        ("p99 at c=1 vs floor's", ("latency", OURS), ("latency", "floor"), "<= 2", 2.0, True),
    ]
    if BEFORE in apps:
        bars += [
            (f"{name} vs before", (name, OURS), (name, BEFORE), "", None, False) for name in runs
        ]
    print("\nratios (medians of the same run):")
    for label, a, b, target, bound, lower_is_better in bars:
        if a[0] not in runs or b[0] not in runs:
            continue
        value = ratio(a, b, "p99_ms" if lower_is_better else "requests_per_s")
        verdict = ""
        if bound is not None:
            ok = value <= bound if lower_is_better else value >= bound
            verdict = "met" if ok else "MISSED"
        # Throughput ratios again from each server's own CPU time per request: what the other
        # tenants of a shared machine move least.
        by_cpu = "" if lower_is_better else f" (by CPU time: {ratio(b, a, 'cpu_us'):.2f}x)"
        print(f"  {label}: {value:.2f}x{by_cpu} {target} {verdict}")
    for name, rounds in paired.items():
        rates = [r.requests_per_s for r in rounds]
        cpu = statistics.median(r.by_cpu for r in rounds)
        each = " ".join(f"{rate:.2f}" for rate in rates)
        verdict, low, high = paired_verdict(rates, 1.0)
        interval = "none, too few rounds" if math.isnan(low) else f"{low:.2f}-{high:.2f}"
        print(
            f"  {_label(name)} vs /predict, A-B-A rounds (median of {each}): "
            f"{statistics.median(rates):.2f}x (by CPU time: {cpu:.2f}x; 95 % interval of the "
            f"median: {interval}) >= 1 {verdict}"
        )


def median_interval(ratios: list[float]) -> tuple[float, float]:
    """The 95 % confidence interval of the median of ``ratios``: the distribution-free one
    (binomial order statistics, ``scipy.stats.quantile_test``), as the rounds of a noisy host are
    far from normal (a few outliers of 20 % among rounds of 2 %). NaN for too few values (under
    6)."""
    interval = stats.quantile_test(ratios, q=1.0, p=0.5).confidence_interval(0.95)
    return float(interval.low), float(interval.high)


def paired_verdict(ratios: list[float], bound: float) -> tuple[str, float, float]:
    """(verdict, ``median_interval``) for a bar ``median >= bound`` read from A-B-A rounds:
    "met" when the whole interval is at or above the bound, "MISSED" when it lies below it,
    "undecided" when it holds the bound (the host's noise decides the median) or is undefined.
    """
    low, high = median_interval(ratios)
    if low >= bound:  # NaN (too few rounds) compares false both ways
        return "met", low, high
    if high < bound:
        return "MISSED", low, high
    return "undecided", low, high


if __name__ == "__main__":
    main()
