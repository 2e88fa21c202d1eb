"""Run the benchmarks and assemble docs/BENCHMARKS.md from their sections.

    python bench/run.py                 # everything (hours: the accuracy benchmark trains many models)
    python bench/run.py --quick         # every script at a tiny scale (smoke test of the harness)
    python bench/run.py --only decode,features,loader,track
    python bench/run.py --assemble      # only rebuild docs/BENCHMARKS.md from docs/benchmarks/*.md
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DOCS, ROOT, machine  # noqa: E402

# Section order in BENCHMARKS.md: the script that writes each section, and extra args.
SCRIPTS = ["accuracy", "loudness", "pretrained", "decode", "features", "loader", "throughput", "track", "models",
           "ensemble",
           "serve_load", "soak", "fuzz", "long_file", "audit", "scale", "music"]
SECTION_OF = {"serve_load": "serve", "ensemble": "ensemble", "long_file": "long_file"}
INTRO = """# Benchmarks

Measured with `make bench` (`python bench/run.py`); each section says where and when it was measured and
which script wrote it. Timings are medians of several runs; every comparison was measured in one run on
the same machine. The machines are shared and noisy: read ratios and orders of magnitude.

GPU columns: the scripts use a GPU when torch sees one, but no GPU machine was available to the session
that measured these tables, so every number below is from the 2-core CPU named in each section.
"""


def assemble(quick: bool = False) -> Path:
    parts = [INTRO]
    names = [SECTION_OF.get(s, s) for s in SCRIPTS]
    seen = set()
    for name in names + sorted(p.stem for p in DOCS.glob("*.md")):
        stem = f"{name}-quick" if quick else name
        path = DOCS / f"{stem}.md"
        if stem in seen or not path.is_file() or (not quick and stem.endswith("-quick")):
            continue
        seen.add(stem)
        text = path.read_text()
        parts.append(re.sub(r"\]\((?!https?:|/|benchmarks/)([^)]+\.png)\)", r"](benchmarks/\1)", text))
    out = ROOT / "docs" / ("BENCHMARKS-quick.md" if quick else "BENCHMARKS.md")
    out.write_text("\n\n".join(p.strip() for p in parts) + "\n")
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default=",".join(SCRIPTS))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--assemble", action="store_true")
    args = ap.parse_args(argv)
    if not args.assemble:
        print(f"benchmarks on {machine()}", flush=True)
        for name in args.only.split(","):
            script = ROOT / "bench" / f"{name}.py"
            if not script.is_file():
                print(f"[run] no bench/{name}.py, skipped", flush=True)
                continue
            t0 = time.perf_counter()
            cmd = [sys.executable, str(script)] + (["--quick"] if args.quick else [])
            rc = subprocess.run(cmd, cwd=ROOT).returncode
            print(f"[run] {name}: {'ok' if rc == 0 else f'FAILED ({rc})'} in {time.perf_counter() - t0:.0f} s",
                  flush=True)
    print(f"wrote {assemble(args.quick)}")


if __name__ == "__main__":
    main()
