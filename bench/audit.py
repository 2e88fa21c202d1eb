"""How long ``earmark audit`` takes on the development data, from nothing cached and with the store cached.

    python bench/audit.py            # ESC-10 (400 clips of 5 s) and FSDD (3000 spoken digits)
    python bench/audit.py --quick    # ESC-10 only

*cold*: a fresh cache, so the files are decoded (in parallel, as training would) and fingerprinted;
*store cached*: the prepared store exists (as after training), the fingerprints are computed;
*all cached*: fingerprints too (a second audit). Writes ``docs/benchmarks/audit.md``.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED, md_table, write_section  # noqa: E402


KNOWN_PAIR = {"audio/2-28314-A-12.flac", "audio/2-30322-A-12.flac"}
KNOWN = ["ESC-10's near-duplicate: `audio/2-28314-A-12.flac` and `audio/2-30322-A-12.flac` (crackling fire, "
         "different freesound ids, both in fold 2) hold the same recording at another gain (their waveforms "
         "correlate at 0.97); within one fold it inflates nothing under the predefined folds."]


def _found(data: dict, name: str, pair: set[str]) -> bool:
    return any({f["path"] for f in d["files"]} == pair for d in data.get(name, {}).get("near_duplicates", []))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="ESC-10 only")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    os.environ.setdefault("EARMARK_PROGRESS", "0")
    from earmark.jobs.audit import audit

    rows, data = [], {}
    for name in ["esc10"] if args.quick else ["esc10", "fsdd"]:
        root = SHARED / name
        if not (root / "manifest.csv").is_file():
            print(f"{root} is not available; skipped")
            continue
        times: dict[str, list[float]] = {"cold": [], "store": [], "all": []}
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory(prefix="earmark-audit-") as cache:
                os.environ["EARMARK_CACHE"] = cache
                t = time.perf_counter()
                report = audit(root, show_progress=False)
                times["cold"].append(time.perf_counter() - t)
                for fp in Path(cache).glob("stores/*/fingerprints-*.npz"):
                    fp.unlink()
                t = time.perf_counter()
                audit(root, show_progress=False)
                times["store"].append(time.perf_counter() - t)
                t = time.perf_counter()
                audit(root, show_progress=False)
                times["all"].append(time.perf_counter() - t)
                shutil.rmtree(cache, ignore_errors=True)
        med = {k: statistics.median(v) for k, v in times.items()}
        hours = report["usable_hours"]
        rows.append([name, report["n_files"], f"{hours * 60:.0f} min", f"{med['cold']:.1f} s",
                     f"{med['store']:.1f} s", f"{med['all']:.1f} s", len(report["exact_duplicates"]),
                     len(report["near_duplicates"]), len(report["warnings"])])
        data[name] = {"times": times, "median": med, "n_files": report["n_files"], "hours": hours,
                      "near_duplicates": report["near_duplicates"], "warnings": report["warnings"]}
        print(rows[-1], flush=True)
    body = "\n".join([
        f"`python bench/audit.py{' --quick' if args.quick else ''}`: median of {args.repeats} audits each "
        "(decoding uses every core, as `earmark prepare` does; fingerprints and comparisons one core).", "",
        md_table(["data", "files", "audio", "cold", "store cached", "all cached", "exact duplicate sets",
                  "near-duplicate sets", "warnings"], rows), "",
        *(KNOWN if _found(data, "esc10", KNOWN_PAIR) else []),
    ])
    write_section("audit" + ("-quick" if args.quick else ""), "Dataset audit", body, data)


if __name__ == "__main__":
    main()
