"""Loader efficiency: training samples/s fed by the real prepared-store loader, over samples/s with the same
batches already in memory. The data pipeline must cost under 5 %.

Both runs train the default recipe's model through the same Lightning Trainer on the same batches (ESC-10,
1 s segments); only where the batches come from differs.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED, md_table, write_section  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batches", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    n_batches = 8 if args.quick else args.batches
    import earmark  # noqa: F401  (first: its torchvision shim must be in place before lightning is imported)
    import lightning.pytorch as pl
    import torch

    from earmark.config import load_recipe
    from earmark.data.loader import SegmentDataset, SegmentTable, make_loader
    from earmark.data.dataset import load_dataset
    from earmark.models.net import build_net
    from earmark.training.fit import fit_normalizer, quiet_lightning
    from earmark.training.module import ClassifierModule

    quiet_lightning()
    recipe = load_recipe("default", ["train.progress=false"])
    ds = load_dataset(SHARED / "esc10", recipe, show_progress=False)
    table = SegmentTable.build(ds.store, ds.usable, recipe.segment, recipe.audio.sample_rate)
    dataset = SegmentDataset(ds.store, table, ds.label_index)
    bs = recipe.train.batch_size
    loader = make_loader(dataset, bs, shuffle=True, seed=0, drop_last=True)
    in_memory = [b for _, b in zip(range(n_batches), loader)]  # the very batches the loader yields first

    def train_on(batches: object) -> float:
        torch.manual_seed(0)
        net = build_net(recipe, len(ds.labels))
        fit_normalizer(net, ds.store, table, 0)
        net.backbone = net.backbone.to(memory_format=torch.channels_last)
        module = ClassifierModule(net, recipe, len(ds.labels), n_batches)
        trainer = pl.Trainer(max_epochs=1, limit_train_batches=n_batches, logger=False, enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
        t0 = time.perf_counter()
        trainer.fit(module, batches)
        return n_batches * bs / (time.perf_counter() - t0)

    real, mem = [], []
    for _ in range(args.rounds):
        real.append(train_on(make_loader(dataset, bs, shuffle=True, seed=0, drop_last=True)))
        # batch_size=None: the stored batches come out as they are (a bare list would be read as many loaders)
        mem.append(train_on(torch.utils.data.DataLoader(in_memory, batch_size=None)))
    r, m = statistics.median(real), statistics.median(mem)
    read_t = statistics.median(
        [_time_reads(dataset, n_batches, bs) for _ in range(args.rounds)])
    cost = 1 - r / m
    body = md_table(["batches from", "training samples/s"], [["prepared store (real loader)", f"{r:.0f}"],
                                                           ["already in memory", f"{m:.0f}"]])
    body += (f"\n\nData-pipeline cost: **{100 * cost:.1f} %** of training throughput (target: under 5 %). "
             f"Reading alone: {1000 * read_t / n_batches:.2f} ms per batch of {bs} one-second segments from the "
             f"memory-mapped store. Median of {args.rounds} rounds of {n_batches} batches, default recipe "
             f"({recipe.model.name}), ESC-10.\n")
    write_section("loader" + ("-quick" if args.quick else ""), "Loader efficiency", body,
                  {"real": real, "in_memory": mem, "cost": cost, "read_s": read_t})
    print(f"[loader] real {r:.0f}/s, in memory {m:.0f}/s, cost {100 * cost:.1f}%", flush=True)


def _time_reads(dataset: object, n_batches: int, bs: int) -> float:
    rng = np.random.default_rng(1)
    t0 = time.perf_counter()
    for _ in range(n_batches):
        dataset[rng.integers(0, len(dataset), bs).tolist()]  # type: ignore[index]
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
