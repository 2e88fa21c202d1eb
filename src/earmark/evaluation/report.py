"""A short ``report.md`` a person can read: what was trained on what, and how well it did."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..utils.files import atomic_write_text

if TYPE_CHECKING:  # pragma: no cover
    from ..config import Recipe
    from ..data.dataset import Dataset
    from ..run import RunFolder


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _model_line(r: "Recipe") -> str:
    from ..models.registry import get_spec

    spec = get_spec(r.model.name)
    if spec.family == "probe":
        return (f"- model: {r.model.name} (frozen pretrained {r.model.pretrained or 'mn04_as'} embeddings of each "
                f"segment + a fitted head); members per fold: {r.ensemble.members}")
    if not spec.is_deep:
        return (f"- model: {r.model.name} (scikit-learn pipeline on summary features of each segment); "
                f"members per fold: {r.ensemble.members}")
    if r.train.epochs == 0:
        labels = ", ".join(f"{c}: {lbl}" for c, lbl in (r.model.head_labels or {}).items())
        return (f"- model: {r.model.name} with pretrained {r.model.pretrained}, zero-shot (no training): each class "
                f"answered by the pretrained output it names ({labels})")
    return (f"- model: {r.model.name}; {r.train.epochs} epochs max, batch {r.train.batch_size}, {r.train.optimizer} "
            f"lr {r.train.lr:g}, schedule {r.train.schedule.name}; members per fold: {r.ensemble.members}"
            + (f" ({r.ensemble.kind}, {r.ensemble.voting} voting)" if r.ensemble.members > 1 else "")
            + (f", test-time augmentation x{r.ensemble.tta}" if r.ensemble.tta > 1 else ""))


def write_report(run: "RunFolder", recipe: "Recipe", ds: "Dataset", m: dict[str, Any]) -> None:
    r = recipe
    n_folds = m["n_folds"]
    pm = "±"
    lines = [
        f"# earmark run: {r.name}",
        "",
        f"- data: `{run.info().get('data', '?')}` ({ds.manifest.layout} layout, {m['n_files']} files, "
        f"{len(ds.labels)} classes, grouped by {ds.manifest.group_by})",
        f"- skipped: {m['n_skipped']} file(s)" + (" (see skipped.csv)" if m["n_skipped"] else ""),
        f"- split: {m['split_method']}, {n_folds} fold{'s' * (n_folds > 1)}",
        f"- audio: {r.audio.sample_rate} Hz mono"
        f"{'' if r.audio.channels == 'mix' else f' (channel: {r.audio.channels})'}; "
        f"segments {r.segment.length_s:g} s, hop {r.segment.hop_s:g} s "
        f"(short: {r.segment.short}, tail: {r.segment.tail})",
        f"- features: {r.features.kind}, {r.features.n_mels} mels, {r.features.win_ms:g}/{r.features.hop_ms:g} ms, "
        f"n_fft {r.features.n_fft}",
        _model_line(r),
        f"- track answer: {m['aggregate']} of segment scores",
        f"- training time: {m['train_seconds'] / 60:.1f} min (wall {m['wall_seconds'] / 60:.1f} min)",
        "",
        "## Scores on held-out data",
        "",
        "| | segment accuracy | track accuracy | track macro-F1 |",
        "|---|---|---|---|",
    ]
    for name, f in m["folds"].items():
        lines.append(f"| {name} | {_pct(f['segment_accuracy'])} | {_pct(f['track_accuracy'])} | "
                     f"{_pct(f['track_macro_f1'])} |")
    if n_folds > 1:
        lines.append(
            f"| **mean {pm} std** | **{_pct(m['segment_accuracy'])} {pm} {_pct(m['segment_accuracy_std'])}** | "
            f"**{_pct(m['track_accuracy'])} {pm} {_pct(m['track_accuracy_std'])}** | "
            f"**{_pct(m['track_macro_f1'])} {pm} {_pct(m['track_macro_f1_std'])}** |")
    lines += ["", "## Per class (tracks, all folds pooled)", "", "| class | precision | recall | F1 | support |",
              "|---|---|---|---|---|"]
    for label, c in m["per_class"].items():
        lines.append(f"| {label} | {_pct(c['precision'])} | {_pct(c['recall'])} | {_pct(c['f1'])} | {c['support']} |")
    size_table = run.file("ensemble_size.md")
    if size_table.is_file():
        lines += ["", "## Ensemble size", "", *size_table.read_text().splitlines()[2:], "",
                  "![accuracy against ensemble size](ensemble_size.png)"]
    lines += ["", "![confusion matrix](confusion_matrix.png)", ""]
    if run.file("spectrograms.png").is_file():
        lines += ["![one training segment per class](spectrograms.png)", ""]
    if run.file("training_curves.png").is_file():
        lines += ["![training curves](training_curves.png)", ""]
    lines += ["Predict with `earmark predict " + str(run.path) + " FILE...`.", ""]
    atomic_write_text(run.file("report.md"), "\n".join(lines))
