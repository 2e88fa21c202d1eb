"""The ``earmark`` command line (one Typer app). Results go to stdout; logs and progress to stderr."""
from __future__ import annotations

import csv
import json
import logging
import sys
from pathlib import Path
from typing import Annotated, NoReturn, Optional

import typer
from typer.core import TyperGroup

from .errors import EarmarkError


class _Commands(TyperGroup):
    """The one error handler: an :class:`EarmarkError` (a mistake a user can fix) becomes one red line on
    stderr and exit status 2, never a traceback."""

    def invoke(self, ctx):  # typer's Context type is private: left unannotated
        try:
            return super().invoke(ctx)
        except EarmarkError as exc:
            _fail(exc)


app = typer.Typer(cls=_Commands, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="earmark: from a folder of labeled audio to a trained, evaluated, served classifier.")

SetOpt = Annotated[Optional[list[str]], typer.Option("--set", "-s", help="Override a setting: key=value "
                                                      "(e.g. --set train.epochs=5). Repeatable.")]
RecipeOpt = Annotated[str, typer.Option("--recipe", "-r", help="Built-in recipe name or YAML file.")]
GroupOpt = Annotated[Optional[str], typer.Option("--group", "-g", help="Manifest column that groups files "
                                                 "(speaker, artist, ...); groups never straddle a split.")]
EngineOpt = Annotated[Optional[str], typer.Option("--engine", help="Where independent work runs: local (this "
                                                  "machine) or ray (a Ray cluster; pip install 'earmark[ray]').")]
AddressOpt = Annotated[Optional[str], typer.Option("--address", help="Ray cluster to join (e.g. 10.0.0.1:6379 "
                                                   "or auto); default: a local Ray instance.")]


def _setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="earmark: %(message)s",
                        stream=sys.stderr, force=True)
    for noisy in ("matplotlib", "PIL", "urllib3", "httpx", "fsspec"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _fail(exc: Exception) -> NoReturn:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="More logging.")] = False) -> None:
    _setup_logging(verbose)


@app.command()
def train(
    data: Annotated[Path, typer.Argument(help="Dataset folder (class folders, manifest.csv, or a known layout).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder to create (or resume).")],
    recipe: RecipeOpt = "default",
    overrides: SetOpt = None,
    group: GroupOpt = None,
    engine: EngineOpt = None,
    address: AddressOpt = None,
) -> None:
    """Train and evaluate a model; resumes an interrupted run in the same folder."""
    from .jobs.train import train as run_train

    run = run_train(data, out, recipe, overrides, group=group, engine=engine, address=address)
    from .training.distributed import is_global_zero

    if is_global_zero():  # the other processes of a DDP fit write nothing
        _print_summary(run.path)


def _print_summary(run_path: Path) -> None:
    m = json.loads((run_path / "metrics.json").read_text())
    n = m["n_folds"]
    sd = (lambda k: f" ± {100 * m[k + '_std']:.1f}" if n > 1 else "")
    typer.echo(f"segment accuracy {100 * m['segment_accuracy']:.1f}%{sd('segment_accuracy')}, "
               f"track accuracy {100 * m['track_accuracy']:.1f}%{sd('track_accuracy')}, "
               f"track macro-F1 {100 * m['track_macro_f1']:.1f}%{sd('track_macro_f1')} "
               f"({n} fold{'s' * (n > 1)}, {m['n_skipped']} skipped)")
    if m.get("best_variant"):
        typer.echo(f"best variant (by {m['selected_by']}): {m['best_variant']}; all variants: "
                   f"{run_path / 'comparison.md'}")
    shown = [n for n in ("report.md", "metrics.json", "confusion_matrix.png", "training_curves.png",
                         "ensemble_size.png", "comparison.md") if (run_path / n).is_file()]
    typer.echo(f"run folder: {run_path}  ({', '.join(shown)})")


@app.command()
def evaluate(
    run: Annotated[Path, typer.Argument(help="A finished run folder.")],
    data: Annotated[Path, typer.Argument(help="Labeled dataset to score the run on.")],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Where to write the scores "
                                                "(default RUN/evaluations/<data name>).")] = None,
) -> None:
    """Score an existing run on a labeled dataset."""
    from .jobs.evaluate import evaluate as run_evaluate

    m = run_evaluate(run, data, out)
    typer.echo(f"segment accuracy {100 * m['segment_accuracy']:.1f}%, track accuracy "
               f"{100 * m['track_accuracy']:.1f}%, track macro-F1 {100 * m['track_macro_f1']:.1f}% "
               f"on {m['n_test_tracks']} files ({m['n_skipped']} skipped); details in {m['out']}")


@app.command()
def predict(
    run: Annotated[Path, typer.Argument(help="A finished run folder.")],
    paths: Annotated[list[Path], typer.Argument(help="Audio files or folders, any length and format.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="json or csv.")] = "json",
    segments: Annotated[bool, typer.Option("--segments", help="Add each segment's start, end and "
                                           "probabilities.")] = False,
    backend: Annotated[str, typer.Option("--backend", help="torch or onnx.")] = "torch",
) -> None:
    """Predict the class of audio files (one answer per file)."""
    from .audio.io import AUDIO_EXTENSIONS
    from .errors import DatasetError
    from .inference.predictor import Predictor, expand_paths

    if fmt not in ("json", "csv"):
        raise EarmarkError(f"--format must be json or csv, not {fmt!r}")
    files = expand_paths(paths)
    if not files:
        raise DatasetError(f"no audio files in {', '.join(map(str, paths))} (looked for "
                           f"{', '.join(sorted(AUDIO_EXTENSIONS))}); give audio files or a folder holding some")
    predictor = Predictor(run, backend=backend)  # type: ignore[arg-type]
    results = predictor.predict(files, segments=segments)
    if fmt == "json":
        typer.echo(json.dumps(results, indent=2))
    else:
        _write_csv(results, predictor.labels, segments)
    if results and all("error" in r for r in results):
        raise typer.Exit(1)


def _write_csv(results: list[dict], labels: list[str], segments: bool) -> None:
    w = csv.writer(sys.stdout, lineterminator="\n")
    probs = [f"p_{lbl}" for lbl in labels]
    if segments:
        w.writerow(["path", "start_s", "end_s", "label", *probs, "track_label", "error"])
        for r in results:
            if "error" in r:
                w.writerow([r["path"], "", "", "", *[""] * len(labels), "", r["error"]])
                continue
            for s in r["segments"]:
                w.writerow([r["path"], s["start"], s["end"], s["label"], *(s["probabilities"][lbl] for lbl in labels),
                            r["label"], ""])
    else:
        w.writerow(["path", "label", *probs, "error"])
        for r in results:
            if "error" in r:
                w.writerow([r["path"], "", *[""] * len(labels), r["error"]])
            else:
                w.writerow([r["path"], r["label"], *(r["probabilities"][lbl] for lbl in labels), ""])


@app.command()
def distill(
    run: Annotated[Path, typer.Argument(help="The teacher: a finished run, typically an ensemble.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder for the student.")],
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Student model (default: the "
                                                 "teacher's model, as one member).")] = None,
    overrides: SetOpt = None,
) -> None:
    """Distill an ensemble into one fast model trained on its soft labels and the true labels."""
    from .jobs.distill import describe
    from .jobs.distill import distill as run_distill

    student = run_distill(run, out, model, overrides)
    _print_summary(student.path)
    typer.echo(describe(json.loads((student.path / "distillation.json").read_text())))


@app.command()
def prepare(
    data: Annotated[Path, typer.Argument(help="Dataset folder.")],
    recipe: RecipeOpt = "default",
    overrides: SetOpt = None,
    group: GroupOpt = None,
    engine: EngineOpt = None,
    address: AddressOpt = None,
) -> None:
    """Decode and cache a dataset (resumable); training does this itself when needed."""
    from .jobs.prepare import prepare as run_prepare

    rec, ds = run_prepare(data, recipe, overrides, group, engine=engine, address=address)
    ok = int(ds.store.ok.sum())
    seconds = float(ds.store.lengths.sum()) / rec.audio.sample_rate
    typer.echo(f"{ds.manifest.layout} layout: {len(ds.manifest)} files, {len(ds.labels)} classes, "
               f"{ok} prepared ({seconds / 60:.1f} min of audio at {rec.audio.sample_rate} Hz), "
               f"{len(ds.skipped())} skipped; store: {ds.store.folder}")
    for path, reason in ds.skipped()[:20]:
        typer.echo(f"  skipped {path}: {reason}")


@app.command()
def audit(
    data: Annotated[Path, typer.Argument(help="Dataset folder (class folders, manifest.csv, or a known "
                                         "layout).")],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Folder for audit.json, audit.md and "
                                                "class_balance.png (default earmark-audit/<data name>).")
                   ] = None,
    recipe: RecipeOpt = "default",
    overrides: SetOpt = None,
    group: GroupOpt = None,
    strict: Annotated[bool, typer.Option("--strict", help="Exit with status 1 on warnings.")] = False,
) -> None:
    """Check a dataset: classes, durations, formats, unreadable files, duplicates and split leaks."""
    from .jobs.audit import audit as run_audit
    from .jobs.audit import write_audit

    report = run_audit(data, recipe, overrides, group)
    folder = out or Path("earmark-audit") / Path(data).resolve().name
    paths = write_audit(report, folder)
    typer.echo(f"{report['layout']} layout: {report['n_files']} files, {report['n_classes']} classes, "
               f"{report['n_usable']} usable ({report['usable_hours'] * 60:.1f} min), "
               f"{len(report['unreadable'])} unusable; duplicate sets: "
               f"{len(report['exact_duplicates'])} exact, {len(report['near_duplicates'])} near "
               f"({report['seconds']:.1f} s)")
    for w in report["warnings"]:
        typer.echo(f"warning: {w}")
    typer.echo(f"report: {paths['markdown']}  ({paths['json'].name}, {paths['plot'].name})")
    if strict and report["warnings"]:
        raise typer.Exit(1)


@app.command()
def recipes() -> None:
    """List the built-in recipes."""
    from .config import load_recipe, recipe_names

    for name in recipe_names():
        typer.echo(f"{name:28s} {load_recipe(name).description.strip().splitlines()[0]}")


@app.command()
def models(pattern: Annotated[str, typer.Argument(help="Shell-style filter, e.g. 'res*'.")] = "*") -> None:
    """List the models in the registry."""
    from .models.registry import get_spec, list_models

    for name in list_models(pattern):
        spec = get_spec(name)
        typer.echo(f"{name:20s} {spec.family:10s} {spec.input:12s} {spec.description}")


@app.command()
def compare(
    runs: Annotated[list[Path], typer.Argument(help="Finished run folders.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for comparison.md/.csv/.png.")] = Path("comparison"),
    speed_batches: Annotated[int, typer.Option("--speed-batches", help="Batches timed per run for the "
                                               "inference speed (0: skip).")] = 3,
) -> None:
    """A leaderboard of runs: model, parameters, accuracy, macro-F1, train time, inference speed."""
    from .evaluation.compare import compare_runs, to_text

    rows = compare_runs(runs, out, speed_batches)
    typer.echo(to_text(rows), nl=False)
    typer.echo(f"written: {out / 'comparison.md'}, {out / 'comparison.csv'}, {out / 'comparison.png'}")


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the dataset and the run.")
                   ] = Path("earmark-demo"),
    overrides: SetOpt = None,
) -> None:
    """Synthesize a small dataset, train, evaluate and predict on it (a few minutes on a laptop CPU)."""
    from .demo import make_demo_dataset
    from .inference.predictor import Predictor
    from .jobs.train import train as run_train

    data = out / "data"
    if not data.is_dir():
        typer.echo(f"synthesizing a 5-class dataset in {data} ...")
        make_demo_dataset(data)
    run = run_train(data, out / "run", "demo", overrides)
    _print_summary(run.path)
    long_file = out / "demo-long.wav"
    result = Predictor(run.path).predict([long_file], segments=True)[0]
    typer.echo(f"\n{long_file} (tone, then knock, then chirp; 4 s each) -> {result['label']}")
    for s in result["segments"]:
        bar = "#" * int(20 * s["probabilities"][s["label"]])
        typer.echo(f"  {s['start']:5.1f}-{s['end']:5.1f} s  {s['label']:6s} {bar}")
    typer.echo(f"\nnext: earmark predict {run.path} YOUR_FILES  |  report: {run.path / 'report.md'}")


@app.command()
def export(
    run: Annotated[Path, typer.Argument(help="A finished run folder.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="Export format (onnx).")] = "onnx",
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="File to write (default RUN/model.onnx).")] = None,
    opset: Annotated[int, typer.Option("--opset", help="ONNX opset.")] = 18,
    input_rate: Annotated[Optional[int], typer.Option(
        "--input-rate", help="Sample rate of the graph's input, if not the run's: a band-limited resampler is built "
                             "in (default file RUN/model-HZhz.onnx).")] = None,
) -> None:
    """Export a run (every member, the filter bank, segmenting and voting) as one ONNX graph."""
    from .inference.onnx import OnnxModel, export_and_verify

    if fmt != "onnx":
        raise EarmarkError(f"--format {fmt!r} is not supported; use onnx")
    path, diff = export_and_verify(run, out, opset=opset, input_rate=input_rate)
    model = OnnxModel(path)
    typer.echo(f"{path}  ({path.stat().st_size / 1e6:.1f} MB; input waveform (batch, samples) float32 at "
               f"{model.input_rate} Hz; {len(model.labels)} classes; max difference from PyTorch {diff or 0:.1e})")


@app.command()
def serve(
    run: Annotated[Path, typer.Argument(help="A finished run folder.")],
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", help="Port.")] = 8000,
    backend: Annotated[str, typer.Option("--backend", help="torch or onnx.")] = "torch",
    max_mb: Annotated[float, typer.Option("--max-mb", help="Largest upload in MB.")] = 50.0,
    max_duration: Annotated[float, typer.Option("--max-duration", help="Longest audio in seconds.")] = 600.0,
    concurrency: Annotated[int, typer.Option("--concurrency", help="Requests predicting at once.")] = 2,
    tagger: Annotated[Optional[str], typer.Option("--tagger", help="Also serve POST /v1/tag with this "
                                                  "pretrained AudioSet model (e.g. mn04_as, or a weights file).")
                      ] = None,
    token: Annotated[str | None, typer.Option("--token", envvar="EARMARK_TOKEN", show_envvar=True,
                                              help="Require 'Authorization: Bearer TOKEN' on /v1/*.")] = None,
    cors_origin: Annotated[list[str] | None, typer.Option(
        "--cors-origin", help="Let pages from this origin call the API (repeatable; none by default).")] = None,
) -> None:
    """Serve a run over HTTP: POST /v1/predict, GET /v1/model, GET /healthz, and a page at /."""
    import uvicorn

    from .serve.app import ServeSettings, create_app, exposure_warning

    settings = ServeSettings(max_upload_bytes=int(max_mb * 1e6), max_duration_s=max_duration,
                             max_concurrent=concurrency, backend=backend, tagger=tagger, token=token or None,
                             cors_origins=tuple(cors_origin or ()))
    if warning := exposure_warning(host, settings.token):
        typer.echo(f"warning: {warning}", err=True)
    web = create_app(run, settings)
    typer.echo(f"serving {run} at http://{host}:{port}/  (Ctrl-C to stop)", err=True)
    uvicorn.run(web, host=host, port=port, log_level="warning")


@app.command()
def tag(
    paths: Annotated[list[Path], typer.Argument(help="Audio files or folders, any length and format.")],
    model: Annotated[str, typer.Option("--model", "-m", help="Pretrained AudioSet model: a checkpoint name "
                                       "(looked up in $EARMARK_WEIGHTS, downloaded once) or a weights file.")
                     ] = "mn04_as",
    top: Annotated[int, typer.Option("--top", "-k", help="Labels per file (highest sigmoid scores).")] = 10,
    fmt: Annotated[str, typer.Option("--format", "-f", help="json or csv.")] = "json",
    segments: Annotated[bool, typer.Option("--segments", help="Also tag each 10 s window (hop 5 s).")] = False,
    aggregate: Annotated[str, typer.Option("--aggregate", help="A long file's score per label: max (default) "
                                           "or mean of its 10 s windows.")] = "max",
) -> None:
    """Tag audio with the 527 AudioSet labels of a pretrained model (no training needed)."""
    from .inference.tagger import Tagger, tags_csv

    if fmt not in ("json", "csv"):
        raise EarmarkError(f"--format must be json or csv, not {fmt!r}")
    results = Tagger(model, aggregate=aggregate).tag(paths, top, segments)  # type: ignore[arg-type]
    typer.echo(json.dumps(results, indent=2) if fmt == "json" else tags_csv(results, segments), nl=fmt == "json")
    if results and all("error" in r for r in results):
        raise typer.Exit(1)


@app.command()
def embed(
    data: Annotated[Path, typer.Argument(help="Dataset folder (class folders, manifest.csv, or a known layout).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the .npy files and manifest.csv.")],
    model: Annotated[str, typer.Option("--model", "-m", help="Pretrained AudioSet model (name or weights "
                                       "file).")] = "mn04_as",
    segments: Annotated[bool, typer.Option("--segments", help="Also write one embedding per window.")] = False,
    window: Annotated[float, typer.Option("--window", help="Window length in seconds.")] = 10.0,
    hop: Annotated[float, typer.Option("--hop", help="Hop between windows in seconds.")] = 5.0,
    group: GroupOpt = None,
) -> None:
    """Write pretrained embeddings of every file (mean of its windows) and, with --segments, of every window."""
    from .inference.embeddings import embed_dataset

    info = embed_dataset(data, out, model, segments, window, hop, group)
    typer.echo(f"{info['n_files']} files ({info['n_segments']} windows) embedded with {info['checkpoint']} "
               f"({info['embed_dim']} dimensions), {info['n_skipped']} skipped, in {info['seconds']:.1f} s: {out}")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("interrupted: run the same command again to resume", err=True)
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
