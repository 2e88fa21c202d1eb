"""Pictures a person would rather look at: confusion matrices, training curves, spectrograms, bars."""
from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..utils.files import atomic_write  # noqa: E402


def _save(fig: plt.Figure, path: Path) -> None:
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=120, bbox_inches="tight"))
    plt.close(fig)


def plot_confusion(confusion: np.ndarray, labels: list[str], path: Path, title: str = "Confusion matrix") -> None:
    """Row-normalised colours with raw counts written in each cell."""
    cm = np.asarray(confusion, dtype=np.float64)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    n = len(labels)
    size = max(4.0, 0.55 * n + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), labels, rotation=45, ha="right")
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=8,
                            color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of true class")
    _save(fig, path)


def write_confusion_csv(confusion: np.ndarray, labels: list[str], path: Path) -> None:
    from ..utils.files import atomic_write_text

    lines = ["true\\predicted," + ",".join(labels)]
    lines += [labels[i] + "," + ",".join(str(int(v)) for v in row) for i, row in enumerate(np.asarray(confusion))]
    atomic_write_text(path, "\n".join(lines) + "\n")


def read_metrics_csv(path: Path) -> dict[str, list[tuple[int, float]]]:
    """Per-epoch series from a Lightning CSVLogger ``metrics.csv``."""
    series: dict[str, dict[int, float]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if not row.get("epoch"):
                continue
            epoch = int(float(row["epoch"]))
            for k, v in row.items():
                if k in ("epoch", "step") or v in ("", None):
                    continue
                series.setdefault(k, {})[epoch] = float(v)
    return {k: sorted(v.items()) for k, v in series.items()}


def read_training_logs(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Merge the CSV logs of every attempt of one fit (earlier attempts are kept as metrics.attempt*.csv)."""
    merged: dict[str, dict[int, float]] = {}
    files = sorted(folder.glob("metrics.attempt*.csv"), key=lambda p: int(p.stem.split("attempt")[1] or 0))
    for path in [*files, folder / "metrics.csv"]:
        if path.is_file():
            for key, series in read_metrics_csv(path).items():
                merged.setdefault(key, {}).update(series)
    return {k: sorted(v.items()) for k, v in merged.items()}


def plot_training_curves(runs: dict[str, dict[str, list[tuple[int, float]]]], path: Path) -> None:
    """Loss and accuracy per epoch; one line per member/fold (name -> series)."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    colors = plt.cm.tab10.colors  # type: ignore[attr-defined]
    for k, (name, series) in enumerate(runs.items()):
        c = colors[k % len(colors)]
        lbl = name if len(runs) > 1 else None
        for key, style in (("train_loss", "--"), ("val_loss", "-")):
            if key in series:
                e, v = zip(*series[key])
                ax_loss.plot(e, v, style, color=c, label=f"{lbl} {key}" if lbl else key, alpha=0.8)
        for key, style in (("train_acc", "--"), ("val_acc", "-")):
            if key in series:
                e, v = zip(*series[key])
                ax_acc.plot(e, v, style, color=c, label=f"{lbl} {key}" if lbl else key, alpha=0.8)
    ax_loss.set_title("loss")
    ax_acc.set_title("accuracy")
    for ax in (ax_loss, ax_acc):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if len(runs) <= 6:
            ax.legend(fontsize=7)
    _save(fig, path)


def plot_examples(features: list[np.ndarray], titles: list[str], path: Path, hop_s: float,
                  suptitle: str = "log-mel spectrogram of one training segment per class") -> None:
    """A grid of spectrograms, each ``(frames, bands)``, one per class."""
    n = len(features)
    cols = min(5, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False)
    lo = float(np.percentile(np.concatenate([f.ravel() for f in features]), 5))
    hi = float(max(f.max() for f in features))
    for k, ax in enumerate(axes.ravel()):
        if k >= n:
            ax.axis("off")
            continue
        f = features[k]
        ax.imshow(f.T, origin="lower", aspect="auto", cmap="magma", vmin=lo, vmax=hi,
                  extent=(0, f.shape[0] * hop_s, 0, f.shape[1]))
        ax.set_title(titles[k], fontsize=9)
        ax.set_xlabel("s", fontsize=8)
        ax.tick_params(labelsize=7)
        if k % cols == 0:
            ax.set_ylabel("mel band", fontsize=8)
    fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def plot_bars(names: list[str], values: list[float], path: Path, title: str, xlabel: str = "",
              errors: list[float] | None = None) -> None:
    fig, ax = plt.subplots(figsize=(7, 0.4 * len(names) + 1.5))
    y = np.arange(len(names))
    ax.barh(y, values, xerr=errors, color="#3b7dd8", alpha=0.85)
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    _save(fig, path)
