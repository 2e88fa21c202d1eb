"""Scaling out: preparation throughput of the local engine vs Ray (1 and 2 workers), Ray's overhead, and a
projection to AudioSet-sized data on a GPU cluster from the per-clip and per-step costs measured here.

Every preparation writes a fresh cache folder; the Ray stores are checked byte for byte against the local
engine's. Run it niced: ``nice -n 10 python bench/scale.py`` (about 5-10 minutes on 2 busy cores).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED, md_table, write_section

SHARD_FILES = 64  # smaller than the default 256 so that 2 workers get several shards each from ~650 files


def dataset_paths(quick: bool) -> tuple[list[Path], float]:
    """ESC-10 (5 s, 44.1 kHz) then MIR-1K (about 8 s, 16 kHz) in manifest order; total audio seconds."""
    import soundfile as sf

    from earmark.data.sources import discover

    paths: list[Path] = []
    for name in ("esc10", "mir1k"):
        items = discover(SHARED / name).items
        paths += [it.path for it in (items[:24] if quick else items)]
    seconds = sum(sf.info(str(p)).duration for p in paths)
    return paths, seconds


def store_digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != ".lock":
            h.update(p.relative_to(folder).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:16]


def prepare_once(paths: list[Path], engine: object | None, workers: int) -> tuple[float, str]:
    from earmark.config import AudioConfig
    from earmark.data.store import prepare_store

    with tempfile.TemporaryDirectory() as cache:  # a fresh cache: nothing is reused
        t0 = time.perf_counter()
        store = prepare_store(paths, AudioConfig(sample_rate=16000), cache, workers=workers, show_progress=False,
                              engine=engine)  # type: ignore[arg-type]
        seconds = time.perf_counter() - t0
        return seconds, store_digest(store.folder)


def noop(i: int) -> int:
    return i


def warm(i: int) -> int:
    """What a worker imports before its first shard (numpy, soundfile, soxr, pydantic, earmark)."""
    import earmark.data.store  # noqa: F401

    return i


def ray_measurements(paths: list[Path], workers: int, repeats: int) -> dict[str, float | str]:
    """Start a local Ray instance with ``workers`` CPUs, prepare, measure per-task overhead, shut down."""
    import ray

    from earmark.engines import get_engine

    t0 = time.perf_counter()
    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    init_s = time.perf_counter() - t0
    try:
        engine = get_engine("ray")
        t0 = time.perf_counter()
        engine.map(warm, [(i,) for i in range(2 * workers)], show=False)  # start the workers, import earmark
        warm_s = time.perf_counter() - t0
        n = 200
        t0 = time.perf_counter()
        engine.map(noop, [(i,) for i in range(n)], show=False)
        per_task = (time.perf_counter() - t0) / n * workers  # worker-seconds per empty task
        results = [prepare_once(paths, engine, 1) for _ in range(repeats)]
        prep_s, digest = statistics.median(r[0] for r in results), results[0][1]
    finally:
        ray.shutdown()
    return {"init_s": init_s, "warm_s": warm_s, "task_overhead_s": per_task, "prepare_s": prep_s, "digest": digest}


def step_cost(repeats: int) -> dict[str, float]:
    """One training step of the default recipe (cnn5, batch 32, 1 s at 16 kHz) on one CPU thread, as a
    Ray task with one CPU runs it."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)

    from earmark.config import load_recipe
    from earmark.models.net import build_net

    rec = load_recipe("default")
    net = build_net(rec, num_classes=10)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    x = torch.randn(rec.train.batch_size, int(rec.segment.length_s * rec.audio.sample_rate))
    y = torch.randint(0, 10, (rec.train.batch_size,))
    times = []
    for k in range(repeats + 3):
        t0 = time.perf_counter()
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
        if k >= 3:
            times.append(time.perf_counter() - t0)
    torch.set_num_threads(threads)
    return {"step_s": statistics.median(times), "batch": rec.train.batch_size, "threads": 1}


def reload_cost(paths_root: Path) -> float:
    """Seconds per file to re-open a finished store from its dataset (what every training task does first)."""
    from earmark.config import load_recipe
    from earmark.data.dataset import load_dataset

    rec = load_recipe("default")
    load_dataset(paths_root, rec, show_progress=False)  # prepares (or reuses) it
    t0 = time.perf_counter()
    ds = load_dataset(paths_root, rec, show_progress=False)
    return (time.perf_counter() - t0) / len(ds.manifest.items)


def m4a_clip_cost() -> float | None:
    """Seconds per 5 s m4a clip (ffmpeg, a process per file), from the decoding benchmark, if it ran."""
    path = Path(__file__).resolve().parents[1] / "docs" / "benchmarks" / "decode.json"
    try:
        m4a = json.loads(path.read_text())["m4a"]
        return float(m4a["earmark_s"]) / int(m4a["files"])
    except (OSError, KeyError, ValueError):
        return None


def projection(clip_core_s: float, ray_eff: float, overhead_s: float, step_s: float, reload_s: float) -> str:
    clips, clip_s, machines, gpus_per, cores_per = 2_000_000, 10.0, 4, 8, 32
    speedup_gpu = 50.0
    workers = machines * cores_per
    shards = math.ceil(clips / 256)
    prep_core_s = clips * clip_core_s + shards * overhead_s
    prep_wall = prep_core_s / (workers * ray_eff)
    store_tb = clips * clip_s * 16000 * 4 / 1e12
    folds, members, epochs, batch = 5, 4, 40, 32
    segs = int((clip_s - 1.0) / 0.5) + 1
    steps_epoch = math.ceil(clips * (folds - 1) / folds * segs / batch)
    gpu_step = step_s / speedup_gpu
    member_epoch_h = steps_epoch * gpu_step / 3600
    tasks, gpus = folds * members, machines * gpus_per
    rounds = math.ceil(tasks / gpus)
    reload_task_s = clips * reload_s
    m4a = m4a_clip_cost()
    m4a_line = "" if m4a is None else (
        f"- if the clips are m4a/AAC (as YouTube-derived AudioSet copies often are), each goes through ffmpeg, a "
        f"process per file: the decoding benchmark measured {m4a * 1000:.0f} ms per 5 s m4a clip here, so about "
        f"{2 * m4a * 1000:.0f} ms per 10 s clip (scaling all of it with duration: pessimistic) and "
        f"**{clips * 2 * m4a / (workers * ray_eff) / 60:.0f} min** of wall time, or convert to FLAC once;\n")
    return f"""
### Projection: AudioSet-sized data on 4 machines x 8 GPUs

No GPU was available to this session: the training side uses the CPU step measured here and an
**assumed** GPU speed-up. Everything marked *assumption* was not measured.

**Preparation** (2 M clips x 10 s, 16 kHz float32):
- measured cost per 10 s clip on one core: {clip_core_s * 1000:.1f} ms (local engine, 1 worker, scaled by
  audio duration from the {clip_core_s / clip_s * 1000:.2f} ms per second of audio measured above);
- Ray overhead per shard task: {overhead_s * 1000:.1f} ms (measured, empty task) x {shards:,} shards of 256
  files = {shards * overhead_s:.0f} worker-seconds, negligible next to decoding;
- *assumption*: 32 CPU cores per machine decode (Ray `num_cpus=32`), so {workers} workers, each as efficient
  as measured here with 2 (parallel efficiency {ray_eff:.2f});
- wall time = 2,000,000 x {clip_core_s:.4f} s / ({workers} x {ray_eff:.2f}) = **{prep_wall / 60:.0f} min**
  ({prep_core_s / 3600:.0f} core-hours) for formats decoded in-process (wav, flac, ogg, mp3);
{m4a_line}- the store is 2 M x 10 s x 16,000 x 4 B = **{store_tb:.2f} TB**; *assumption*: shared storage writes
  at >= 1 GB/s, i.e. >= {store_tb * 1e12 / 1e9 / 60:.0f} min, so at this scale the storage, not the CPUs,
  may set the pace.

**Training** (5 folds x 4 members = {tasks} tasks, default recipe: cnn5, batch {batch}, 1 s segments with
0.5 s hop, {epochs} epochs):
- segments per 10 s clip: {segs}; training clips per fold: 1.6 M; steps per epoch =
  1,600,000 x {segs} / {batch} = {steps_epoch:,};
- measured CPU step here (one thread): {step_s * 1000:.0f} ms; *assumption*: a datacenter GPU runs this
  step {speedup_gpu:.0f}x faster ({gpu_step * 1000:.1f} ms; not measured: no GPU was lent to this session);
- one member: {steps_epoch:,} x {gpu_step:.4f} s = **{member_epoch_h:.1f} h per epoch**,
  {member_epoch_h * epochs:.0f} h for {epochs} epochs;
- {tasks} tasks on {gpus} GPUs (one GPU per task): {rounds} round, {gpus - tasks} GPUs idle; the ensemble
  takes as long as one member: **{member_epoch_h * epochs / 24:.1f} days for {epochs} epochs**
  ({member_epoch_h:.1f} h per epoch). Sequentially on one GPU it would take {tasks}x as long
  ({member_epoch_h * epochs * tasks / 24:.0f} days). At this scale one would train for a few epochs, with
  a larger batch, or give each task 1-2 GPUs by DDP (train.devices) when the tasks are fewer than the GPUs;
- every task first re-opens the store: {reload_s * 1e6:.0f} us per file measured here (listing and hashing
  the file identities), i.e. {reload_task_s / 60:.0f} min per task for 2 M files on local disk, small next to
  a member's hours; on shared storage with slower `stat` calls, more (not measured).
"""


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3, help="preparations per row (median)")
    args = ap.parse_args(argv)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ["EARMARK_PROGRESS"] = "0"
    from earmark.data import store

    store.SHARD_FILES = SHARD_FILES
    started = time.perf_counter()
    load = os.getloadavg()[0]
    paths, audio_s = dataset_paths(args.quick)
    print(f"[scale] {len(paths)} files, {audio_s / 60:.1f} min of audio", flush=True)
    runs: dict[str, dict[str, float | str]] = {}
    local: dict[int, list[tuple[float, str]]] = {1: [], 2: []}
    for _ in range(args.repeats):  # interleaved, so that a burst of load hits both alike
        for w in (1, 2):
            local[w].append(prepare_once(paths, None, w))
            print(f"[scale] local {w}: {local[w][-1][0]:.1f} s", flush=True)
    for w in (1, 2):
        runs[f"local, {w} worker{'s' * (w > 1)}"] = {"prepare_s": statistics.median(t for t, _ in local[w]),
                                                     "digest": local[w][0][1]}
    for w in (1, 2):
        runs[f"ray, {w} worker{'s' * (w > 1)}"] = r = ray_measurements(paths, w, args.repeats)
        print(f"[scale] ray {w}: {r['prepare_s']:.1f} s (init {r['init_s']:.1f} s)", flush=True)
    reference = runs["local, 1 worker"]["digest"]
    same = all(r["digest"] == reference for r in runs.values())
    step = step_cost(3 if args.quick else args.steps)
    reload_s = reload_cost(SHARED / "esc10")
    base = float(runs["local, 1 worker"]["prepare_s"])
    rows = []
    for name, r in runs.items():
        s = float(r["prepare_s"])
        rows.append([name, f"{s:.1f}", f"{len(paths) / s:.1f}", f"{audio_s / s:.0f}x", f"{base / s:.2f}",
                     f"{r['init_s']:.1f}" if "init_s" in r else "-", f"{r['warm_s']:.1f}" if "warm_s" in r else "-",
                     f"{1000 * float(r['task_overhead_s']):.1f}" if "task_overhead_s" in r else "-"])
    body = md_table(["engine", "prepare s", "files/s", "x real time", "speed-up vs local 1", "Ray start s",
                     "workers' first task s", "Ray ms per empty task"], rows)
    ray1, ray2 = float(runs["ray, 1 worker"]["prepare_s"]), float(runs["ray, 2 workers"]["prepare_s"])
    overhead = float(runs["ray, 2 workers"]["task_overhead_s"])
    body += f"""

{len(paths)} files (ESC-10: 400 clips of 5 s at 44.1 kHz; MIR-1K: 258 clips of 4-13 s at 16 kHz), {audio_s / 60:.1f}
min of audio, decoded to 16 kHz into a fresh cache folder each time (median of {args.repeats}), {SHARD_FILES} files per shard
({math.ceil(len(paths) / SHARD_FILES)} shards). Load average when it started: {load:.1f} on
{os.cpu_count()} cores (other engineers' jobs): absolute times are inflated, ratios less so. The local engine decodes the shards one after another over
its worker processes; Ray runs one task per shard. All four stores are byte-identical: **{same}**.
Ray's own cost: starting a local instance ({float(runs['ray, 1 worker']['init_s']):.1f} s, not in "prepare s"),
starting its workers and importing earmark there ("workers' first task", not in "prepare s"), {overhead * 1000:.1f}
ms per task, and {100 * (ray1 / base - 1):+.0f}% wall time with one worker against the
local engine with one. With 2 workers Ray is {ray1 / ray2:.2f}x faster than with 1 on this 2-core machine
(shared with other jobs, so read ratios). The local engine with 2 decoding processes is not faster than with
1 on this oversubscribed machine; the single-file store before the sharded one behaved the same (300 ESC-10
clips, measured alongside: 3.2-3.5 s with 1 process, 4.2-4.7 s with 2): its worker processes send every
decoded array back to the one process that writes (likely the cost here), while each Ray worker writes its
own shard.

Training step (default recipe, batch {step['batch']}, 1 s at 16 kHz, forward + backward + AdamW, {step['threads']}
torch thread, as in a one-CPU Ray task): **{step['step_s'] * 1000:.0f} ms** on this CPU. Re-opening a finished store: {reload_s * 1e6:.0f} us
per file (ESC-10).
"""
    clip_core_s = base / audio_s * 10.0
    body += projection(clip_core_s, min(1.0, ray1 / ray2 / 2), overhead, step["step_s"], reload_s)
    body += f"\nWall time of this benchmark: {time.perf_counter() - started:.0f} s.\n"
    suffix = "-quick" if args.quick else ""
    data = {"runs": runs, "files": len(paths), "audio_s": audio_s, "identical": same, "step": step,
            "reload_s_per_file": reload_s}
    write_section("scale" + suffix, "Scaling out: preparation on Ray, and a cluster projection", body, data)
    print(f"[scale] done in {time.perf_counter() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
