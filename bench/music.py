"""Music: vocal separation measured on real songs, and singer gender on MIR-1K (../shared/data/mir1k).

    python bench/music.py                          # separation table, then the singer-gender rows
    python bench/music.py --only separation        # one part (separation, gender, fourclass)
    python bench/music.py --demucs-checkpoint htdemucs.th   # add Demucs to the separation table
    python bench/music.py --quick                  # a few clips, 1 epoch: a smoke test of the script

Separation: every MIR-1K clip, mixture = left + right channel, reference voice = right channel. Each
separator's voice estimate is scored with ``mir_eval.separation.bss_eval_sources`` (SDR, BSS Eval v3, on the
whole clip: they last 3-12 s) and with SI-SDR (Le Roux et al. 2019, "SDR - half-baked or well done?":
``10 log10(|a s|^2 / |a s - y|^2)`` with ``a = <y, s> / |s|^2``); the improvement is over the mixture's own
score. The settings of each separator are first tuned on every 16th clip (median SDR improvement), then the
chosen setting runs on all clips.

Singer gender: leave one singer out (``--group singer``, 6 folds): the zero-shot AudioSet network (recipe
``singer-gender``) on the mixture, on REPET vocals and on the true voice channel; it fine-tuned; the published
system's structure (recipe ``singer-gender-published``) sized to minutes per row with each separator, a seed ensemble
and one ResNet-34; the default recipe. Wall time next to every accuracy. The 4-class task (female solo / male solo /
duet / no voice) is built here from MIR-1K's channels. Needs the mn04_as weights in ``$EARMARK_WEIGHTS`` (default
here: ../shared/weights).

Writes docs/benchmarks/music.md (music-quick.md with --quick) and its plot.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, SHARED, bar_chart, md_table, pct, timed_once, write_section  # noqa: E402

MIR1K = SHARED / "mir1k"
OUT = ROOT / "bench" / "out" / "music"
TUNE_EVERY = 16  # the tuning subset: every 16th clip of the manifest
#: Clip stride per separator in the full table (1: every clip). On a loaded machine ``{"hpss": 4}`` keeps the slowest
#: separator to 65 clips; ``--all-clips`` overrides it. docs/BENCHMARKS.md scores every clip with every separator.
FULL_EVERY: dict[str, int] = {}

# Settings tried per separator on the tuning subset: name -> keyword arguments of repet_vocals / hpss_vocals.
GRID: dict[str, dict[str, dict[str, float]]] = {
    "repet": {
        "default": {},
        "plain REPET-SIM (period_weight=0)": {"period_weight": 0.0},
        "min_distance_s=0.5": {"min_distance_s": 0.5},
        "window_s=0.064": {"window_s": 0.064},
        "cutoff_hz=200": {"cutoff_hz": 200.0},
    },
    "hpss": {  # about 4x the cost of repet per clip: two settings only on this CPU
        "default": {},
        "cutoff_hz=200": {"cutoff_hz": 200.0},
    },
}


# --------------------------------------------------------------------------------------------- data


def manifest() -> list[dict[str, str]]:
    with open(MIR1K / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


def read_clip(row: dict[str, str]) -> tuple[np.ndarray, np.ndarray, int]:
    """``(mixture, voice, rate)``: mixture = left + right, voice = right (float64)."""
    x, sr = sf.read(str(MIR1K / row["path"]), dtype="float64", always_2d=True)
    return x[:, 0] + x[:, 1], x[:, 1].copy(), int(sr)


# ------------------------------------------------------------------------------------------ metrics


def si_sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Scale-invariant SDR in dB (Le Roux et al. 2019), zero-mean signals."""
    s, y = reference - reference.mean(), estimate - estimate.mean()
    target = (y @ s) / max(s @ s, 1e-20) * s
    return float(10 * np.log10(max(target @ target, 1e-20) / max((y - target) @ (y - target), 1e-20)))


def sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """BSS Eval SDR in dB (mir_eval.separation.bss_eval_sources, one source); NaN for a silent estimate."""
    import mir_eval

    if not np.any(estimate):
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # mir_eval deprecates bss_eval_sources in favour of bss_eval_images
        return float(mir_eval.separation.bss_eval_sources(reference[None], estimate[None])[0][0])


def separator(method: str, kwargs: dict[str, float], checkpoint: str | None = None
              ) -> Callable[[np.ndarray, int], np.ndarray]:
    """``fn(mixture, rate) -> voice``: the library's separate_vocals, or its method with other settings."""
    from earmark.audio import separate as sep

    if not kwargs:
        return lambda x, sr: sep.separate_vocals(x, sr, method, checkpoint=checkpoint).astype(np.float64)
    fn = {"repet": sep.repet_vocals, "hpss": sep.hpss_vocals}[method]
    return lambda x, sr: sep.chunked(x, sr, lambda c: fn(c, sr, **kwargs))


class ClipScores:
    """Per-clip scores kept in a JSON file, so an interrupted benchmark resumes where it stopped."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, list[float]] = json.loads(path.read_text()) if path.is_file() else {}

    def get(self, key: str) -> list[float] | None:
        return self.data.get(key)

    def put(self, key: str, value: list[float]) -> None:
        self.data[key] = value
        if len(self.data) % 10 == 0:
            self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.data))


def score(rows: list[dict[str, str]], fn: Callable[[np.ndarray, int], np.ndarray] | None, system: str,
          cache: ClipScores) -> dict[str, Any]:
    """Per-clip SDR / SI-SDR of ``fn``'s voice (``None``: the mixture itself), the mixture's own scores, and the
    separation time."""
    out: dict[str, list[float]] = {"sdr": [], "si_sdr": [], "sdr_mix": [], "si_sdr_mix": []}
    seconds = audio_s = 0.0
    for row in rows:
        for name, f in (("mixture", None), (system, fn)):
            key = f"{name}|{row['path']}"
            if cache.get(key) is None:
                mix, voice, sr = read_clip(row)
                t0 = time.perf_counter()
                est = mix if f is None else f(mix, sr)
                took = time.perf_counter() - t0
                cache.put(key, [sdr(voice, est), si_sdr(voice, est), took, mix.size / sr])
        m, e = cache.get(f"mixture|{row['path']}"), cache.get(f"{system}|{row['path']}")
        assert m is not None and e is not None
        out["sdr"].append(e[0])
        out["si_sdr"].append(e[1])
        out["sdr_mix"].append(m[0])
        out["si_sdr_mix"].append(m[1])
        seconds += e[2]
        audio_s += e[3]
    cache.save()
    res: dict[str, Any] = dict(out)
    res["seconds"], res["audio_s"] = seconds, audio_s
    return res


def summary(res: dict[str, Any]) -> dict[str, float]:
    sdr_i = np.array(res["sdr"]) - np.array(res["sdr_mix"])
    si_i = np.array(res["si_sdr"]) - np.array(res["si_sdr_mix"])
    ok = ~np.isnan(sdr_i)
    return {"sdr_median": float(np.nanmedian(res["sdr"])), "sdr_mean": float(np.nanmean(res["sdr"])),
            "sdri_median": float(np.median(sdr_i[ok])), "sdri_mean": float(np.mean(sdr_i[ok])),
            "si_sdr_median": float(np.median(res["si_sdr"])), "si_sdr_mean": float(np.mean(res["si_sdr"])),
            "si_sdri_median": float(np.median(si_i)), "si_sdri_mean": float(np.mean(si_i)),
            "improved": float(np.mean(sdr_i[ok] > 0)), "n": int(ok.sum()), "n_all": len(sdr_i),
            "s_per_min": 60 * res["seconds"] / max(res["audio_s"], 1e-9)}


def separation(quick: bool, checkpoint: str | None, all_clips: bool = False, with_defaults: bool = False
               ) -> tuple[str, dict[str, Any]]:
    rows = manifest()
    tune_rows = rows[::TUNE_EVERY] if not quick else rows[::64]
    all_rows = rows if not quick else rows[::32]
    cache = ClipScores(OUT / f"separation-scores{'-quick' if quick else ''}.json")
    t_start = time.perf_counter()
    tuning: dict[str, dict[str, dict[str, float]]] = {}
    chosen: dict[str, str] = {}
    for method, grid in GRID.items():
        tuning[method] = {}
        for name, kwargs in grid.items():
            tuning[method][name] = summary(score(tune_rows, separator(method, kwargs), f"{method} ({name})", cache))
            print(f"[music] tune {method} {name}: SDRi median {tuning[method][name]['sdri_median']:.2f} dB",
                  flush=True)
        chosen[method] = max(tuning[method], key=lambda n: tuning[method][n]["sdri_median"])
    t_tune = time.perf_counter() - t_start
    systems = [(m, chosen[m], GRID[m][chosen[m]], None) for m in GRID]
    if with_defaults:  # what a recipe gets (audio.separation uses the library's defaults), when tuning chose otherwise
        systems += [(m, "default", {}, None) for m in GRID if chosen[m] != "default"]
    if checkpoint:
        systems.append(("demucs", Path(checkpoint).name, {}, checkpoint))
    results: dict[str, dict[str, float]] = {}
    n_clips: dict[str, int] = {}
    for method, name, kwargs, ckpt in systems:
        label = f"{method} ({name})"
        fn = separator(method, kwargs, ckpt)
        clips = all_rows[::1 if all_clips else FULL_EVERY.get(method, 1)]
        results[label] = summary(score(clips, fn, label, cache))
        results[label + " mixture"] = summary(score(clips, None, "mixture", cache))
        n_clips[label] = len(clips)
        print(f"[music] {label} on {len(clips)} clips: SDRi median {results[label]['sdri_median']:.2f} dB",
              flush=True)
    mix = summary(score(all_rows, None, "mixture", cache))
    # Cached per-clip times come from whenever each clip was first scored (the shared CPU's load varies by 5x over
    # an hour): the times in the table are measured again here, every system on the same clips, one after another.
    timing_rows = all_rows[::32][:8]
    for method, name, kwargs, ckpt in systems:
        fn = separator(method, kwargs, ckpt)
        clips = [read_clip(r) for r in timing_rows]
        t0 = time.perf_counter()
        for m, _, sr in clips:
            fn(m, sr)
        results[f"{method} ({name})"]["s_per_min"] = 60 * (time.perf_counter() - t0) / sum(m.size / sr
                                                                                           for m, _, sr in clips)
    wall = time.perf_counter() - t_start

    def f(x: float) -> str:
        return f"{x:+.2f}" if not np.isnan(x) else "n/a"

    table = [["mixture (left + right)", f"{mix['sdr_median']:.2f} / {mix['sdr_mean']:.2f}", "0", "0",
              f"{mix['si_sdr_median']:.2f} / {mix['si_sdr_mean']:.2f}", "0", "0", "-", "-"]]
    for label, s in results.items():
        if label.endswith(" mixture"):
            continue
        if n_clips[label] != len(all_rows):
            m = results[label + " mixture"]
            table.append([f"mixture, the {n_clips[label]} clips of {label}", f"{m['sdr_median']:.2f} / {m['sdr_mean']:.2f}",
                          "0", "0", f"{m['si_sdr_median']:.2f} / {m['si_sdr_mean']:.2f}", "0", "0", "-", "-"])
            label = f"{label}, {n_clips[label]} clips"
        table.append([label, f"{s['sdr_median']:.2f} / {s['sdr_mean']:.2f}", f(s["sdri_median"]), f(s["sdri_mean"]),
                      f"{s['si_sdr_median']:.2f} / {s['si_sdr_mean']:.2f}", f(s["si_sdri_median"]),
                      f(s["si_sdri_mean"]), f"{100 * s['improved']:.0f}%", f"{s['s_per_min']:.1f} s"])
    tune_table = [[m, n, f(s["sdri_median"]), f(s["sdri_mean"]), f(s["si_sdri_median"]), f"{s['s_per_min']:.1f} s"]
                  for m in tuning for n, s in tuning[m].items()]
    labels = [k for k in results if not k.endswith(" mixture")]
    plot = bar_chart("music-separation" + ("-quick" if quick else ""), labels,
                     {"SDR improvement, median (dB)": [results[k]["sdri_median"] for k in labels],
                      "SI-SDR improvement, median (dB)": [results[k]["si_sdri_median"] for k in labels]},
                     "dB over the mixture", f"Vocal separation on MIR-1K ({len(all_rows)} clips)")
    demucs = ("Demucs ran from " + checkpoint if checkpoint else
              "Demucs is not in the table: no Demucs checkpoint is available on this machine (earmark never "
              "downloads weights); `--demucs-checkpoint PATH` adds it")
    subset_note = ("" if all(n == len(all_rows) for n in n_clips.values()) else
                   " HPSS costs about 4x REPET per clip: on the loaded shared CPU all 258 clips would have taken over an "
                   "hour, so its row scores every 4th clip (65; `--all-clips` scores all), next to the mixture's "
                   "scores on the same clips.")
    body = f"""### Vocal separation on real songs (MIR-1K)

{len(all_rows)} clips ({sum(float(r['duration_s']) for r in all_rows) / 60:.1f} min of audio, 16 kHz); mixture = left + right
channel, reference = the right (voice) channel. SDR: `mir_eval.separation.bss_eval_sources` (BSS Eval, one
source, on each whole clip); SI-SDR: the standard definition (Le Roux et al. 2019). Improvement = the separated
voice's score minus the mixture's (the mixture itself scores the voice at about 0 dB). Values are median / mean
over clips; "clips improved": share of clips with a positive SDR improvement; time: separation only (not
scoring), seconds per minute of audio, every system timed on the same {len(timing_rows)} clips one after another in
this run (the tuning table's times were taken whenever each clip was first scored, under varying load).

{md_table(["system", "SDR (dB) median / mean", "SDR impr. median", "SDR impr. mean", "SI-SDR (dB) median / mean",
           "SI-SDR impr. median", "SI-SDR impr. mean", "clips improved", "time per min of audio"], table)}

{plot}

Tuning ({len(tune_rows)} clips, every {TUNE_EVERY}th; per separator, the setting of best median SDR improvement
there is the one run on all clips above, so those clips are part of the table too: a slight optimism):

{md_table(["separator", "setting", "SDR impr. median", "SDR impr. mean", "SI-SDR impr. median", "time per min"],
          tune_table)}

{demucs}.{subset_note} Wall time of this part: {wall / 60:.1f} min (tuning {t_tune / 60:.1f} min; per-clip scores are cached in
bench/out/music, so an interrupted run resumes and the wall time then covers only the rest).
"""
    data = {"mixture": mix, "results": results, "n_clips": n_clips, "tuning": tuning, "chosen": chosen, "wall_s": wall}
    return body, data


# ------------------------------------------------------------------------------------- singer gender


#: every singer-gender row: leave one singer out (6 folds, each test fold one singer never trained on)
LOSO = ["split.method=logo", "train.loggers=[csv]", "train.progress=false"]
#: the published system's structure (recipe singer-gender-published: 3 s snippets, 40 bands) sized to minutes per
#: row on 2 cores: one cnn5 (ResNet-34 costs ~20x per snippet), 5 epochs (one cosine cycle)
SCRATCH = LOSO + ["model.name=cnn5", "ensemble.members=1", "train.epochs=5", "train.schedule.t0=5"]
TUNED_REPET = ["audio.separation=repet", "audio.separation_options={min_distance_s: 0.5}"]  # the separation table's
#: the AudioSet network's own answer (recipe singer-gender, which ships it): no training
ZERO_SHOT = LOSO + ["train.epochs=0"]
#: name -> (recipe, overrides, description); run in this order until the time budget is spent.
GENDER_ROWS: dict[str, tuple[str, list[str], str]] = {
    "zs-mix": ("singer-gender", ZERO_SHOT, "zero-shot mn04_as (Female vs Male singing), mixture"),
    "zs-repet": ("singer-gender", ZERO_SHOT + TUNED_REPET, "zero-shot mn04_as, REPET vocals"),
    "zs-voice": ("singer-gender", ZERO_SHOT + ["audio.channels=right"],
                 "zero-shot mn04_as, true voice channel (upper bound)"),
    "ft-mix": ("singer-gender", LOSO + ["train.epochs=3"],
               "mn04_as fine-tuned 3 epochs from those two outputs, mixture"),
    "sg-mix": ("singer-gender-published", SCRATCH + ["audio.separation=none"], "scratch cnn5, mixture"),
    "sg-repet": ("singer-gender-published", SCRATCH + TUNED_REPET, "scratch cnn5, REPET vocals"),
    "sg-hpss": ("singer-gender-published", SCRATCH + ["audio.separation=hpss"], "scratch cnn5, HPSS vocals"),
    "sg-voice": ("singer-gender-published", SCRATCH + ["audio.separation=none", "audio.channels=right"],
                 "scratch cnn5, true voice channel (upper bound)"),
    "cnn5-x3": ("singer-gender-published", SCRATCH + TUNED_REPET + ["ensemble.members=3"],
                "scratch cnn5, 3-seed ensemble, REPET vocals"),
    # ResNet-34 costs about 20x cnn5 per snippet: 3 epochs (one cosine cycle) to fit minutes
    "resnet34": ("singer-gender-published", SCRATCH + TUNED_REPET + ["model.name=resnet34", "train.epochs=3",
                                                                      "train.schedule.t0=3"],
                 "scratch ResNet-34 (one, 3 epochs), REPET vocals"),
    "default": ("default", LOSO, "default recipe (scratch cnn5, 1 s segments, 40 epochs), mixture"),
}
#: the default recipe's leave-one-singer-out run is also a row of bench/pretrained.py: read it when it is there
SHARED_RUNS = {"default": ROOT / "bench" / "out" / "pretrained" / "mir1k-gender-scratch"}
#: the 4-class task: the published structure, sized as above; and the pretrained network with two of its four
#: output rows started from Female / Male singing (the duet and no-voice rows new), fine-tuned
FOUR_ROWS: dict[str, tuple[str, list[str], str]] = {
    "four-scratch": ("singer-gender-published", SCRATCH + ["audio.separation=none"], "scratch cnn5, mixture"),
    "four-ft": ("singer-gender", LOSO + ["train.epochs=3"], "mn04_as fine-tuned 3 epochs, mixture"),
    "four-probe": ("pretrained-probe", LOSO + ["model.name=probe_mlp"], "probe_mlp on frozen mn04_as, mixture"),
}


def train_row(name: str, data: Path, recipe: str, overrides: list[str], quick: bool) -> dict[str, Any]:
    """Train one row (or read it when an earlier call, or bench/pretrained.py for a shared run, finished it); its
    metrics and first wall time."""
    import earmark

    if quick:
        overrides = [*overrides, "data.max_files_per_class=6", "split.max_folds=2"] + (
            ["train.epochs=1"] if "train.epochs=0" not in overrides else [])
    out = OUT / "runs" / (name + ("-quick" if quick else ""))
    shared = SHARED_RUNS.get(name)
    if shared is not None and not quick and (shared.parent / f"{shared.name}.wall.json").is_file():
        out = shared
    marker = out.parent / f"{out.name}.wall.json"
    info = json.loads((out / "run.json").read_text()) if (out / "run.json").is_file() else {}
    if info.get("status") == "complete" and marker.is_file():
        wall = float(json.loads(marker.read_text())["wall_s"])
    else:
        _, wall = timed_once(marker, lambda: earmark.train(data, out, recipe, overrides, group="singer",
                                                           show_progress=False))
    metrics = json.loads((out / "metrics.json").read_text())
    return {"metrics": metrics, "wall_s": wall, "overrides": overrides, "recipe": recipe, "folder": str(out)}


def row_line(desc: str, r: dict[str, Any]) -> list[str]:
    m = r["metrics"]
    folds = ", ".join(f"{100 * f['track_accuracy']:.0f}" for f in m["folds"].values())
    last = {o.split("=", 1)[0]: o for o in r["overrides"]}  # a later setting of a key replaces an earlier one
    settings = " ".join(o for o in last.values() if not o.startswith(("train.loggers", "split.method", "train.progress")))
    c = m["confusion"]
    pooled = sum(c[i][i] for i in range(len(c))) / max(1, sum(map(sum, c)))
    return [desc, pct(m["track_accuracy"], m.get("track_accuracy_std")), pct(pooled), pct(m["segment_accuracy"]),
            f"{r['wall_s'] / 60:.1f} min", f"{m['train_seconds'] / 60:.1f} min", folds, f"`{r['recipe']}` {settings}"]


# ----------------------------------------------------------------------------- the 4-class task (built here)

FOUR_PER_CLASS = 20
PAIRS = [("annar", "abjones"), ("heycat", "bobon"), ("titon", "bug")]  # (female, male): one group each


def build_fourclass(root: Path, per_class: int, seed: int = 0) -> Path:
    """female / male / duet / none from MIR-1K's channels, grouped by singer pair (every singer and every
    accompaniment used by one pair only, so a group never straddles a split).

    female (male): a clip of the pair's female (male) singer as sung (voice + its own accompaniment); duet:
    the female and the male singer's voices of two clips (cut to the shorter) over one of their accompaniments;
    none: an accompaniment alone. Written as 16 kHz mono FLAC, with a manifest (path, label, pair).
    """
    if (root / "manifest.csv").is_file():
        return root
    rng = np.random.default_rng(seed)
    by_singer: dict[str, list[dict[str, str]]] = {}
    for row in manifest():
        by_singer.setdefault(row["singer"], []).append(row)
    lines = []
    for k, (fem, mal) in enumerate(PAIRS):
        def pick(singer: str) -> tuple[np.ndarray, np.ndarray]:
            x, _ = sf.read(str(MIR1K / by_singer[singer][rng.integers(len(by_singer[singer]))]["path"]),
                           dtype="float32", always_2d=True)
            return x[:, 0], x[:, 1]  # accompaniment, voice
        for i in range(per_class):
            examples = {}
            acc, voice = pick(fem)
            examples["female"] = acc + voice
            acc, voice = pick(mal)
            examples["male"] = acc + voice
            (acc_f, v_f), (acc_m, v_m) = pick(fem), pick(mal)
            n = min(v_f.size, v_m.size)
            acc = acc_f[:n] if i % 2 == 0 else acc_m[:n]
            examples["duet"] = acc + v_f[:n] + v_m[:n]
            examples["none"] = pick(fem if i % 2 else mal)[0]
            for label, wave in examples.items():
                rel = f"audio/{label}_{k}_{i:02d}.flac"
                (root / "audio").mkdir(parents=True, exist_ok=True)
                peak = max(1.0, float(np.abs(wave).max()) / 0.99)
                sf.write(str(root / rel), wave / peak, 16000, subtype="PCM_16")
                lines.append({"path": rel, "label": label, "singer": f"{fem}+{mal}"})
    with open(root / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["path", "label", "singer"])
        w.writeheader()
        w.writerows(lines)
    return root


HEADERS = ["system", "track accuracy (mean ± std over folds)", "pooled accuracy", "segment accuracy", "wall time",
           "of which training", "per fold (%)", "recipe and settings"]


def gender(quick: bool, parts: list[str], rows: list[str], budget_min: float) -> tuple[str, dict[str, Any]]:
    """The singer-gender table (and the 4-class table): rows in order until ``budget_min`` is spent."""
    os.environ.setdefault("EARMARK_WEIGHTS", str(SHARED.parent / "weights"))
    started = time.perf_counter()
    results: dict[str, dict[str, Any]] = {}
    not_run: list[str] = []

    def spent() -> bool:
        return (time.perf_counter() - started) / 60 > budget_min

    if "gender" in parts:
        for name in rows:
            recipe, overrides, desc = GENDER_ROWS[name]
            if spent():
                not_run.append(desc)
                continue
            print(f"[music] gender {name} ...", flush=True)
            results[name] = train_row(name, MIR1K, recipe, overrides, quick)
            print(f"[music] gender {name}: {pct(results[name]['metrics']['track_accuracy'])} in "
                  f"{results[name]['wall_s'] / 60:.1f} min", flush=True)
    four: dict[str, dict[str, Any]] = {}
    if "fourclass" in parts:
        data = build_fourclass(OUT / ("fourclass" + ("-quick" if quick else "")), 3 if quick else FOUR_PER_CLASS)
        for name, (recipe, overrides, desc) in FOUR_ROWS.items():
            if spent():
                not_run.append(f"4-class: {desc}")
                continue
            print(f"[music] 4-class {name} ...", flush=True)
            four[name] = train_row(name, data, recipe, overrides, quick)
            print(f"[music] 4-class {name}: {pct(four[name]['metrics']['track_accuracy'])}", flush=True)
    body = "### Singer gender on MIR-1K, leave one singer out (6 folds)\n\n"
    if results:
        body += md_table(HEADERS, [row_line(GENDER_ROWS[n][2], r) for n, r in results.items()]) + "\n\n"
        body += bar_chart("music-gender" + ("-quick" if quick else ""), [GENDER_ROWS[n][2] for n in results],
                          {"track accuracy (%)": [100 * r["metrics"]["track_accuracy"] for r in results.values()]},
                          "track accuracy (%)", "Singer gender, leave one singer out (MIR-1K)") + "\n\n"
        body += (
            "Each of the 6 folds tests one singer (3 female, 3 male) never heard in training, so a fold's accuracy is "
            "the share of that singer's clips called right; the mean over folds weighs singers equally, the pooled "
            "accuracy weighs clips. Wall time is the whole `earmark train` on this machine, run one row after "
            "another: decoding (and separating) every file the first time its audio settings are used, then every "
            "fold; a row that reuses an earlier row's prepared store does not pay for decoding again. Zero-shot "
            "rows train nothing (`train.epochs=0`): their folds differ only in which singer is scored. Scratch rows "
            "use the published system's input (recipe `singer-gender-published`: 3 s snippets, 40 mel bands, "
            "10 ms hop) sized to minutes: one cnn5 and 5 epochs unless the row says otherwise. The default "
            "recipe's row is bench/pretrained.py's run of it when that benchmark ran first. ResNet-34 ran 3 epochs "
            "to fit minutes (6 min for all folds); the published 15 epochs x 20 seeds would take about 10 hours "
            "here.\n\n")
    if four:
        body += ("### The 4-class task (female solo / male solo / duet / no voice)\n\nBuilt in this script from "
                 f"MIR-1K's channels: {FOUR_PER_CLASS} examples per class for each of 3 singer pairs (annar+abjones, "
                 "heycat+bobon, titon+bug), every voice and accompaniment used within its pair only; leave one pair "
                 "out (3 folds). The audit warns of near-identical recordings under two labels: a duet and a solo, "
                 "or a solo and its accompaniment alone, can share material, always within one pair (one side of "
                 "every split). Chance: 25%.\n\n"
                 + md_table(HEADERS, [row_line(FOUR_ROWS[n][2], r) for n, r in four.items()]) + "\n\n")
    if not_run:
        body += "Not run (time budget spent): " + "; ".join(not_run) + ".\n"
    return body, {"rows": results, "fourclass": four, "not_run": not_run}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="separation,gender,fourclass", help="comma-separated parts")
    ap.add_argument("--rows", default="", help="gender rows to run (default: all that are defined)")
    ap.add_argument("--demucs-checkpoint", default=None, help="a local Demucs model file (.th or bag .yaml)")
    ap.add_argument("--no-defaults", action="store_true",
                    help="score only the tuned settings on all clips, not also the library defaults")
    ap.add_argument("--all-clips", action="store_true", help="score every separator on every clip (hpss: >1 h)")
    ap.add_argument("--budget-min", type=float, default=90.0, help="no new training row starts after this")
    ap.add_argument("--quick", action="store_true", help="a few clips, 1 epoch: a smoke test")
    args = ap.parse_args(argv)
    if not (MIR1K / "manifest.csv").is_file():
        print(f"[music] {MIR1K} is not available; nothing to measure", flush=True)
        return
    suffix = "-quick" if args.quick else ""
    parts = args.only.split(",")
    cache = OUT / f"sections{suffix}"
    cache.mkdir(parents=True, exist_ok=True)
    if "separation" in parts:
        body, data = separation(args.quick, args.demucs_checkpoint, args.all_clips, not args.no_defaults)
        (cache / "separation.md").write_text(body)
        (cache / "separation.json").write_text(json.dumps(data, indent=2) + "\n")
    if "gender" in parts or "fourclass" in parts:
        rows = args.rows.split(",") if args.rows else list(GENDER_ROWS)
        body, data = gender(args.quick, [p for p in parts if p in ("gender", "fourclass")], rows, args.budget_min)
        (cache / "gender.md").write_text(body)
        (cache / "gender.json").write_text(json.dumps(data, indent=2, default=str) + "\n")
    sections = [(cache / f"{p}.md").read_text() for p in ("separation", "gender") if (cache / f"{p}.md").is_file()]
    data_all = {p: json.loads((cache / f"{p}.json").read_text()) for p in ("separation", "gender")
                if (cache / f"{p}.json").is_file()}
    note = " QUICK MODE: a few clips, 1 epoch; not a result." if args.quick else ""
    write_section("music" + suffix, "Music: vocal separation and singer gender on MIR-1K",
                  (note + "\n\n" if note else "") + "\n\n".join(sections), data_all)


if __name__ == "__main__":
    main()
