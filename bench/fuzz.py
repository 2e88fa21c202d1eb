"""Long fuzzing run: the decoder and the upload endpoint against hostile files, for minutes.

    nice -n 15 python bench/fuzz.py --minutes 5     # what docs/robustness.md reports
    python bench/fuzz.py --quick                    # 20 s (smoke check of the script)

The strategies are the default suite's (tests/fuzz_cases.py); the checks are its checks
(tests/audio/test_fuzz_decode.py, tests/serve/test_fuzz_upload.py): every case ends in valid audio or a
typed error (the endpoint: a 200 with an answer or a 4xx with the error shape), within a time limit per
case, with the process's peak memory reported. Cases run in batches of fresh random examples until the
time is up. Writes docs/benchmarks/fuzz.md and the count into docs/robustness.md.
"""
from __future__ import annotations

import argparse
import re
import resource
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import ROOT, write_section  # noqa: E402


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--upload-share", type=float, default=0.25, help="Share of the time spent on the endpoint.")
    ap.add_argument("--run", type=Path, help="Run to serve for the endpoint (default: a tiny FSDD run).")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.minutes = 1 / 3
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from tests.audio.test_fuzz_decode import decode_case
    from tests.fuzz_cases import hostile_files

    counts: Counter[str] = Counter()
    start_peak = peak_mb()
    batch = settings(max_examples=200, deadline=None, database=None, derandomize=False,
                     suppress_health_check=list(HealthCheck))
    t0 = time.perf_counter()
    decode_budget = args.minutes * 60 * (1 - args.upload_share)

    with tempfile.TemporaryDirectory(prefix="earmark-fuzz-") as tmp:
        @batch
        @given(case=hostile_files())
        def decode(case: tuple[str, bytes]) -> None:
            counts["decode " + decode_case(*case, Path(tmp))] += 1

        while time.perf_counter() - t0 < decode_budget:
            decode()
        decode_s = time.perf_counter() - t0
        decode_growth = peak_mb() - start_peak
        upload_s, upload_growth = 0.0, 0.0
        from serve_load import train_small_run

        try:
            run = args.run or train_small_run(Path(tmp) / "run", quick=True)
        except SystemExit as exc:
            run = None
            print(f"no run to serve ({exc}); the endpoint is not fuzzed", file=sys.stderr)
        if run is not None:
            from fastapi.testclient import TestClient

            from earmark.serve.app import ServeSettings, create_app
            from tests.serve.test_fuzz_upload import post_case

            client = TestClient(create_app(run, ServeSettings(max_upload_bytes=200_000, max_duration_s=30.0)),
                                raise_server_exceptions=False)
            post_case(client, ".wav", b"RIFF", raw=True)  # the first request's set-up is not the fuzzing's
            upload_peak = peak_mb()
            t1 = time.perf_counter()

            @batch
            @given(case=hostile_files(), raw=st.booleans())
            def upload(case: tuple[str, bytes], raw: bool) -> None:
                counts[f"upload {post_case(client, *case, raw=raw)}"] += 1

            while time.perf_counter() - t1 < args.minutes * 60 - decode_s:
                upload()
            upload_s = time.perf_counter() - t1
            upload_growth = peak_mb() - upload_peak
    total = sum(counts.values())
    n_decode = sum(v for k, v in counts.items() if k.startswith("decode"))
    n_upload = total - n_decode
    growth = max(decode_growth, upload_growth)
    print(f"fuzz: {total} cases, no failure ({dict(counts)}); peak memory +{decode_growth:.0f} MB decoding, "
          f"+{upload_growth:.0f} MB serving", file=sys.stderr)
    body = (f"`bench/fuzz.py`: {total} hostile cases in {(decode_s + upload_s) / 60:.1f} minutes (nice 15, shared 2-core "
            f"machine), every one ending in valid audio or a typed error: {n_decode} at the decoder "
            f"({counts['decode ok']} decoded, {counts['decode refused']} refused with `AudioDecodeError`) in "
            f"{decode_s:.0f} s, {n_upload} at `POST /v1/predict` ("
            + ", ".join(f"{counts[k]} x {k.split()[1]}" for k in sorted(counts) if k.startswith("upload"))
            + f") in {upload_s:.0f} s. No unhandled exception, no case over its time limit (10 s decoding, 20 s "
            f"a request), the process's peak memory grew by {decode_growth:.0f} MB while decoding and by {upload_growth:.0f} MB while "
            "serving (after the app's first request)."
            + (" *Quick mode: a smoke check.*" if args.quick else ""))
    write_section("fuzz-quick" if args.quick else "fuzz", "Fuzzing the decoder and the upload endpoint", body,
                  {"cases": total, "counts": dict(counts), "decode_s": decode_s, "upload_s": upload_s,
                   "peak_growth_mb": {"decode": decode_growth, "upload": upload_growth}})
    if not args.quick:
        doc = ROOT / "docs" / "robustness.md"
        text = doc.read_text()
        line = (f"<!-- fuzz -->Last long run (`bench/fuzz.py`, {time.strftime('%Y-%m-%d')}): **{total} cases** "
                f"({n_decode} decoder, {n_upload} endpoint) in {(decode_s + upload_s) / 60:.1f} minutes, no failure; "
                f"peak memory +{growth:.0f} MB.<!-- /fuzz -->")
        doc.write_text(re.sub(r"<!-- fuzz -->.*?<!-- /fuzz -->", line, text, flags=re.S))


if __name__ == "__main__":
    main()
