"""Soak test of `earmark serve`: 32 clients on loopback for 10 minutes; errors must be 0, memory flat.

    nice -n 15 python bench/soak.py                      # 10 minutes, 32 clients, a small FSDD run
    python bench/soak.py --run runs/esc10 --minutes 30
    python bench/soak.py --quick                         # 20 s, 4 clients (smoke check of the script)

The server runs as its own process (see bench/serve_load.py); every client loops POSTing one real audio
file. Reported: requests, errors, latency, and the server's resident memory (RSS) after the warm-up, each
minute, and at the end. Written to docs/benchmarks/soak.md (assembled into docs/BENCHMARKS.md).
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import md_table, write_section  # noqa: E402
from serve_load import Server, default_file, load, rss_mb, train_small_run  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, help="Run folder to serve (default: train a small FSDD run).")
    ap.add_argument("--file", type=Path, help="Audio file each client sends (default: a 5-s ESC-10 clip).")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--concurrency", type=int, default=2, help="The server's --concurrency.")
    ap.add_argument("--quick", action="store_true", help="20 s, 4 clients.")
    args = ap.parse_args()
    if args.quick:
        args.clients, args.minutes = 4, 1 / 3
    import soundfile as sf

    with tempfile.TemporaryDirectory(prefix="earmark-soak-") as tmp:
        run = args.run or train_small_run(Path(tmp) / "run", quick=True)
        file = args.file or default_file()
        body = file.read_bytes()
        audio_s = sf.info(str(file)).duration
        with Server(run, "torch", args.concurrency) as server:
            assert server.proc is not None
            pid = server.proc.pid
            asyncio.run(load(server.url, body, file.name, 2, 3.0))  # warm-up: imports, first allocations
            samples: list[tuple[float, float]] = [(0.0, rss_mb(pid))]
            stop = threading.Event()
            t0 = time.perf_counter()

            def sample() -> None:
                while not stop.wait(min(60.0, args.minutes * 60 / 10)):
                    samples.append((time.perf_counter() - t0, rss_mb(pid)))

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            latencies, n_err, examples = asyncio.run(load(server.url, body, file.name, args.clients,
                                                          args.minutes * 60))
            wall = time.perf_counter() - t0
            stop.set()
            sampler.join()
            samples.append((wall, rss_mb(pid)))
    lat = np.asarray(latencies) * 1000
    start, end = samples[0][1], samples[-1][1]
    peak = max(m for _, m in samples)
    print(f"soak: {lat.size} requests, {n_err} errors in {wall:.0f} s; RSS {start:.0f} -> {end:.0f} MB "
          f"(peak {peak:.0f})", file=sys.stderr)
    body_md = (
        f"`bench/soak.py`: `earmark serve` (torch backend, `--concurrency {args.concurrency}`) on loopback, "
        f"{args.clients} clients looping POSTs of `{file.name}` ({audio_s:.1f} s of audio, {len(body) / 1e3:.0f} kB, "
        f"multipart) for {wall / 60:.1f} minutes, after a 3-s warm-up. Run under `nice -n 15` on a machine shared "
        "with other work, so throughput is low and not a measurement of speed; the point is errors and memory."
        + (" *Quick mode: a smoke check, not a measurement.*" if args.quick else "") + "\n\n"
        + md_table(["requests", "errors", "req/s", "p50 ms", "p99 ms", "server RSS start MB", "server RSS end MB",
                    "server RSS peak MB"],
                   [[lat.size, n_err, f"{lat.size / wall:.2f}",
                     f"{np.percentile(lat, 50):.0f}" if lat.size else "-",
                     f"{np.percentile(lat, 99):.0f}" if lat.size else "-", f"{start:.0f}", f"{end:.0f}",
                     f"{peak:.0f}"]])
        + "\n\nServer RSS over time (s: MB): " + ", ".join(f"{t:.0f}: {m:.0f}" for t, m in samples) + ". "
        + _plateau(samples) + "\n"
        + (f"\nError examples: {examples}\n" if n_err else ""))
    print(write_section("soak-quick" if args.quick else "soak", "Soak: 32 clients for 10 minutes", body_md,
                        {"requests": int(lat.size), "errors": n_err, "wall_s": wall, "rss_mb": samples,
                         "clients": args.clients}))
    if n_err:
        sys.exit(1)


def _plateau(samples: list[tuple[float, float]]) -> str:
    """A sentence on the memory after the first minute (request buffers and allocator arenas fill up first)."""
    later = [m for t, m in samples if t >= 60]
    if len(later) < 2:
        return ""
    return (f"From the first minute on it stayed between {min(later):.0f} and {max(later):.0f} MB "
            f"(first minute: {samples[0][1]:.0f} -> {later[0]:.0f} MB, as 32 clients' buffers fill).")


if __name__ == "__main__":
    main()
