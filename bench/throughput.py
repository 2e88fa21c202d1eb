"""Training samples/s and inference segments/s per model, eager PyTorch and ONNX Runtime.

    python bench/throughput.py                         # every deep model family
    python bench/throughput.py --models cnn5,resnet18  # some of them
    python bench/throughput.py --quick                 # two small models, few steps

Each model gets a tiny run of the default recipe (1 epoch on 2 ESC-10 clips per class: accuracy is not the
point, only the trained run's shape and cost), which is then timed on random one-second segments:
- training: one full step (waveform -> log-mel on the fly -> augmentation -> forward, backward, AdamW) at
  batch 32, median over steps;
- inference, eager: the run's first member as the Predictor loads it (features + network, no grad);
- inference, ONNX: the same run exported by `earmark export` (waveform in, probabilities out) in
  onnxruntime, fed the same batches of 64 segments.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, SHARED, bar_chart, md_table, median_time, write_section  # noqa: E402

MODELS = ["cnn", "cnn5", "crnn", "raw1d", "resnet18", "mobilenetv2", "efficientnet_b0"]
QUICK = ["cnn5", "raw1d"]


def tiny_run(model: str, out: Path) -> Path:
    import earmark

    run = out / model
    earmark.train(SHARED / "esc10", run, "default",
                  [f"model.name={model}", "train.epochs=1", "data.max_files_per_class=2", "split.max_folds=1",
                   "train.loggers=[csv]", "split.method=folds"], show_progress=False)
    return run


def train_rate(run_dir: Path, steps: int, batch: int = 32) -> tuple[float, int]:
    """Training samples per second of one full step on random one-second segments, and parameters."""
    import torch

    from earmark.models.net import build_net
    from earmark.run import open_run
    from earmark.training.module import ClassifierModule

    run = open_run(run_dir)
    recipe, classes = run.recipe(), len(run.labels())
    net = build_net(recipe, classes)
    module = ClassifierModule(net, recipe, classes, 100)
    module.train()
    module.log = lambda *a, **k: None  # type: ignore[method-assign]  # no Trainer attached
    opt = torch.optim.AdamW(module.parameters(), recipe.train.lr)
    length = int(round(recipe.segment.length_s * recipe.audio.sample_rate))
    gen = torch.Generator().manual_seed(0)
    x = 0.1 * torch.randn(batch, length, generator=gen)
    y = torch.randint(0, classes, (batch,), generator=gen)

    def step() -> None:
        loss = module.training_step((x, y), 0)
        opt.zero_grad()
        loss.backward()
        opt.step()

    n_params = sum(p.numel() for p in net.parameters())
    return batch / median_time(step, repeats=steps, warmup=2), n_params


def inference_rates(run_dir: Path, repeats: int, batch: int = 64) -> tuple[float, float]:
    """Segments per second, eager and ONNX, on the same batch of one-second segments."""
    from earmark.inference.members import load_member
    from earmark.inference.onnx import OnnxModel, export_onnx
    from earmark.run import open_run
    from earmark.utils.files import read_json

    run = open_run(run_dir)
    recipe = run.recipe()
    entry = read_json(run.file("members.json"))["members"][0]
    member = load_member(run.path, entry, recipe, len(run.labels()), batch_size=batch)
    length = int(round(recipe.segment.length_s * recipe.audio.sample_rate))
    segs = (0.1 * np.random.default_rng(0).standard_normal((batch, length))).astype(np.float32)
    eager = batch / median_time(lambda: member.predict_proba(segs), repeats=repeats)
    onnx_path = run_dir / "model.onnx"
    if not onnx_path.is_file():
        export_onnx(run_dir, onnx_path)
    onnx_model = OnnxModel(onnx_path)
    ort = batch / median_time(lambda: onnx_model.predict_segments(segs), repeats=repeats)
    return eager, ort


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=None, help=f"comma-separated, from {', '.join(MODELS)}")
    ap.add_argument("--steps", type=int, default=10, help="timed training steps per model")
    ap.add_argument("--repeats", type=int, default=5, help="timed inference batches per backend")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "throughput")
    args = ap.parse_args(argv)
    import torch

    from earmark.models.registry import get_spec

    names = args.models.split(",") if args.models else (QUICK if args.quick else MODELS)
    steps, repeats = (3, 2) if args.quick else (args.steps, args.repeats)
    rows, data = [], []
    for name in names:
        t0 = time.perf_counter()
        run = tiny_run(name, args.out)
        train, n_params = train_rate(run, steps)
        eager, ort = inference_rates(run, repeats)
        print(f"[throughput] {name}: train {train:.0f}/s, eager {eager:.0f}/s, onnx {ort:.0f}/s "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
        spec = get_spec(name)
        rows.append([name, spec.family, spec.input, f"{n_params / 1e6:.2f} M", f"{train:.0f}", f"{eager:.0f}", f"{ort:.0f}",
                     f"{ort / eager:.2f}x"])
        data.append({"model": name, "family": spec.family, "train_samples_per_s": train,
                     "eager_segments_per_s": eager, "onnx_segments_per_s": ort, "parameters": n_params})
    body = md_table(["model", "family", "input", "parameters", "training samples/s", "inference segments/s (eager)",
                     "inference segments/s (ONNX)", "ONNX / eager"], rows)
    body += (f"\n\nOne-second segments at 16 kHz, default recipe features (64-band log-mel, 20 ms hop) computed "
             f"inside the model. Training: full step at batch 32 with the default augmentations, median of "
             f"{steps} steps. Inference: batches of 64, median of {repeats}; both backends include the "
             f"filter bank. torch threads: {torch.get_num_threads()}."
             + (" QUICK MODE: few steps; not a result." if args.quick else "") + "\n")
    suffix = "-quick" if args.quick else ""
    body += "\n" + bar_chart(f"throughput{suffix}", [d["model"] for d in data], {
        "training (samples/s)": [d["train_samples_per_s"] for d in data],
        "inference, eager (segments/s)": [d["eager_segments_per_s"] for d in data],
        "inference, ONNX (segments/s)": [d["onnx_segments_per_s"] for d in data]},
        "per second (log)", "Throughput per model on this CPU", log=True) + "\n"
    write_section("throughput" + suffix, "Training and inference throughput per model",
                  body, {"rows": data, "quick": args.quick})


if __name__ == "__main__":
    main()
