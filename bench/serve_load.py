"""Load benchmark of `earmark serve`: many concurrent clients on loopback for a bounded time.

    python bench/serve_load.py --quick                          # a few seconds: tiny run, 4 clients, 3 s
    python bench/serve_load.py --run runs/esc10 --clients 1,8,32 --seconds 30 --backend torch,onnx

The server runs as its own process (`earmark serve`), started and stopped here; each client loops
POSTing one real audio file (multipart, as the page does) until the time is up. Reported per setting:
throughput (requests/s and seconds of audio/s), latency p50/p90/p99/max, errors (must be zero) and the
server's memory (RSS after start-up, and its peak while loaded). Results go to docs/benchmarks/serve.md.
Without --run, a small run is trained first on FSDD (../shared/data/fsdd).
"""
from __future__ import annotations

import argparse
import asyncio
import csv
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def rss_mb(pid: int, key: str = "VmRSS") -> float:
    """Resident memory of a process, in MB (Linux /proc)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_small_run(out: Path, quick: bool) -> Path:
    """A small FSDD run to serve when none is given."""
    import earmark

    data = SHARED / "fsdd"
    if not (data / "manifest.csv").is_file():
        sys.exit("no --run given and ../shared/data/fsdd is missing: pass --run RUN")
    per_class, epochs = (3, 1) if quick else (30, 3)
    sets = ["model.name=cnn", f"train.epochs={epochs}", "train.early_stopping=null", "train.loggers=[csv]",
            f"data.max_files_per_class={per_class}", "audio.sample_rate=8000", "features.f_max=4000",
            "segment.length_s=0.5", "segment.hop_s=0.25"]
    print(f"training a small FSDD run in {out} ...", file=sys.stderr)
    earmark.train(data, out, "default", sets, show_progress=False)
    return out


def default_file() -> Path:
    """A real 5-s ESC-10 clip if the shared data is there, else a synthesized 5-s wav."""
    esc = SHARED / "esc10"
    if (esc / "manifest.csv").is_file():
        with open(esc / "manifest.csv", newline="") as f:
            return esc / next(iter(csv.DictReader(f)))["path"]
    import soundfile as sf

    path = Path(tempfile.mkdtemp(prefix="earmark-bench-")) / "tone.wav"
    t = np.arange(5 * 16000) / 16000
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000)
    return path


@dataclass
class Server:
    run: Path
    backend: str
    concurrency: int
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "Server":
        import httpx

        cmd = [sys.executable, "-m", "earmark.cli", "serve", str(self.run), "--port", str(self.port),
               "--backend", self.backend, "--concurrency", str(self.concurrency)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     env={**os.environ, "EARMARK_PROGRESS": "0"})
        deadline = time.time() + 600  # an ONNX backend may export first
        while time.time() < deadline:
            if self.proc.poll() is not None:
                sys.exit(f"the server exited: {self.proc.stderr.read().decode(errors='replace')[-2000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.2)
        sys.exit("the server did not start in time")

    def __exit__(self, *exc: object) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


async def load(url: str, body: bytes, name: str, clients: int, seconds: float) -> tuple[list[float], int, list[str]]:
    """``clients`` concurrent loops POSTing the file until ``seconds`` are up: latencies (s), errors, samples."""
    import httpx

    latencies: list[float] = []
    errors: list[str] = []
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:

        async def worker() -> None:
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                try:
                    r = await client.post("/v1/predict", files={"file": (name, body, "application/octet-stream")})
                    if r.status_code != 200 or "label" not in r.json():
                        errors.append(f"HTTP {r.status_code}: {r.text[:200]}")
                        continue
                except httpx.HTTPError as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                latencies.append(time.perf_counter() - t0)

        await asyncio.gather(*(worker() for _ in range(clients)))
    return latencies, len(errors), errors[:3]


def measure(server: Server, body: bytes, name: str, clients: int, seconds: float, audio_s: float) -> dict:
    assert server.proc is not None
    pid = server.proc.pid
    base = rss_mb(pid)
    peak = [base]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], rss_mb(pid))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    latencies, n_err, examples = asyncio.run(load(server.url, body, name, clients, seconds))
    wall = time.perf_counter() - t0
    stop.set()
    sampler.join()
    lat = np.asarray(latencies) * 1000

    def pct(q: float) -> float:
        return float(np.percentile(lat, q)) if lat.size else float("nan")

    return {"clients": clients, "requests": int(lat.size), "errors": n_err, "error_examples": examples,
            "wall_s": wall, "rps": lat.size / wall, "audio_x": lat.size * audio_s / wall,
            "p50": pct(50), "p90": pct(90), "p99": pct(99), "max": float(lat.max()) if lat.size else float("nan"),
            "rss_start": base, "rss_peak": peak[0]}


def write_report(path: Path, rows: list[dict], args: argparse.Namespace, run: Path, file: Path, audio_s: float,
                 size: int) -> str:
    lines = [
        "## Serving under load (`bench/serve_load.py`)",
        "",
        f"`earmark serve` ({'quick check, ' if args.quick else ''}{args.seconds:g} s per setting) on loopback: "
        f"each client loops POSTing `{file.name}` ({audio_s:.1f} s of audio, {size / 1e3:.0f} kB, multipart) to "
        f"`/v1/predict`. Run `{run.name}`; server `--concurrency {args.concurrency}`; "
        f"{os.cpu_count()} CPU cores, {platform.python_implementation()} {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d')}.",
        "",
        "| backend | clients | requests | errors | req/s | audio s/s | p50 ms | p90 ms | p99 ms | max ms "
        "| server RSS start MB | server RSS peak MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['backend']} | {r['clients']} | {r['requests']} | {r['errors']} | {r['rps']:.1f} | "
                     f"{r['audio_x']:.0f} | {r['p50']:.0f} | {r['p90']:.0f} | {r['p99']:.0f} | {r['max']:.0f} | "
                     f"{r['rss_start']:.0f} | {r['rss_peak']:.0f} |")
    total_err = sum(r["errors"] for r in rows)
    lines += ["", f"Errors: {total_err} in {sum(r['requests'] + r['errors'] for r in rows)} requests."
              + ("" if total_err == 0 else f" Examples: {rows[0]['error_examples']}"), ""]
    if args.quick:
        lines += ["*Quick mode: a smoke check of the script (a few seconds, 4 clients"
                  + ("" if args.run else ", a 1-epoch run") + "); not a measurement to quote.*", ""]
    text = "\n".join(lines)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, help="Run folder to serve (default: train a small FSDD run).")
    ap.add_argument("--file", type=Path, help="Audio file each client sends (default: a 5-s ESC-10 clip).")
    ap.add_argument("--clients", default="1,8,32", help="Comma-separated numbers of concurrent clients.")
    ap.add_argument("--seconds", type=float, default=30.0, help="Duration of each setting.")
    ap.add_argument("--backend", default="torch", help="Comma-separated: torch, onnx.")
    ap.add_argument("--concurrency", type=int, default=2, help="The server's --concurrency.")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "serve.md")
    ap.add_argument("--quick", action="store_true", help="A few seconds: tiny run, 4 clients, 3 s.")
    args = ap.parse_args()
    if args.quick:
        args.clients, args.seconds = "4", 3.0
    import soundfile as sf

    with tempfile.TemporaryDirectory(prefix="earmark-bench-") as tmp:
        run = args.run or train_small_run(Path(tmp) / "run", args.quick)
        file = args.file or default_file()
        body = file.read_bytes()
        audio_s = sf.info(str(file)).duration
        rows = []
        for backend in args.backend.split(","):
            with Server(run, backend.strip(), args.concurrency) as server:
                # one warm-up request, so start-up costs are not counted as latency
                asyncio.run(load(server.url, body, file.name, 1, 0.01))
                for clients in (int(c) for c in args.clients.split(",")):
                    r = measure(server, body, file.name, clients, args.seconds, audio_s)
                    r["backend"] = backend.strip()
                    rows.append(r)
                    print(f"{backend} clients={clients}: {r['rps']:.1f} req/s, p50 {r['p50']:.0f} ms, "
                          f"p99 {r['p99']:.0f} ms, errors {r['errors']}, "
                          f"RSS {r['rss_start']:.0f}->{r['rss_peak']:.0f} MB",
                          file=sys.stderr)
        print(write_report(args.out, rows, args, run, file, audio_s, len(body)))
        if any(r["errors"] for r in rows):
            sys.exit(1)


if __name__ == "__main__":
    main()
