"""Loading a run never executes pickled code, and every file of a run folder is written atomically.

Two guards read earmark's own source: one for ways of loading that can unpickle (``pickle``, ``joblib``,
``torch.load`` without ``weights_only=True``, ``np.load(allow_pickle=True)``, ``yaml.load``), one for
writes that bypass :mod:`earmark.utils.files`. Then tampered run files (a checkpoint holding a pickled
object, a ``config.yaml`` with a Python tag, weights that are not safetensors, a member folder outside
the run) are refused with a :class:`RunError` naming the file, and the object in them is never built.
"""
import io
import json
import re
import shutil
import tokenize
from pathlib import Path

import pytest
import torch

import earmark
from earmark.errors import RunError

SRC = Path(earmark.__file__).resolve().parent

UNSAFE_LOADS = {
    r"^\s*(import|from)\s+(pickle|cPickle|_pickle|dill|cloudpickle|joblib|shelve|marshal)\b":
        "a pickle-based module",
    r"\b(pickle|dill|cloudpickle|joblib)\.loads?\(": "unpickling",
    r"allow_pickle\s*=\s*True": "np.load(allow_pickle=True)",
    r"\byaml\.(load|unsafe_load|full_load|load_all)\(": "yaml.load (use yaml.safe_load)",
    r"\b(Unsafe|Full)?Loader\b\s*[,)]": "a YAML loader that builds Python objects",
    r"\bread_pickle\(": "pandas.read_pickle",
}
#: (file, reason): torch.load calls allowed without weights_only=True
TORCH_LOAD_EXCEPTIONS = {
    "audio/separate.py": "a Demucs checkpoint the user names (audio.demucs_checkpoint): Demucs stores its "
                         "model class in the file, so it cannot be read weights-only; see docs/robustness.md",
}
WRITES = r"\bnp\.save(z|z_compressed)?\(|\btorch\.save\(|\.savefig\(|\.write_text\(|\.write_bytes\(|" \
         r"\bjson\.dump\(|\bonnx\.save\(|\bsave_(model|file)\(|\bopen\([^)]*[\"'](w|a|x|wb|ab|xb|w\+)[\"']"
#: (file, what the line contains): writes that are not run-folder files, or are the atomic helpers themselves
WRITE_EXCEPTIONS = {
    ("utils/files.py", ""): "the atomic helpers themselves",
    ("data/store.py", '"w"'): "the store's lock file, in the cache, holding no data",
    ("data/store.py", "data_path"): "the store's append-only audio, committed by its journal (resumable)",
    ("data/store.py", 'open(part, "wb")'): "a shard's audio, streamed to a .part file that is synced, then renamed",
    ("data/audit.py", "open(tmp"): "inside atomic_write (the fingerprint cache)",
    ("data/audit.py", "np.savez(fh"): "inside atomic_write (the fingerprint cache)",
    ("serve/upload.py", "open(self.path"): "a request's temporary upload, not a run folder",
    ("utils/memory.py", "_CLEAR_REFS.write_text"): "a kernel control file (resets the peak memory counter)",
}


def _sources() -> list[tuple[str, str]]:
    return [(p.relative_to(SRC).as_posix(), p.read_text(encoding="utf-8")) for p in sorted(SRC.rglob("*.py"))]


def _code_lines(text: str) -> list[tuple[int, str]]:
    """Lines of code without comments and long strings (docstrings and messages may name ``pickle`` or
    ``torch.save``; they load and write nothing). Short strings stay: they are file modes (``"wb"``)."""
    lines = text.splitlines()
    blanks = [t for t in tokenize.generate_tokens(io.StringIO(text).readline)
              if t.type == tokenize.COMMENT or (t.type == tokenize.STRING and len(t.string) > 6)]
    for tok in reversed(blanks):  # from the end, so earlier positions stay valid
        (r1, c1), (r2, c2) = tok.start, tok.end
        filler = "" if tok.type == tokenize.COMMENT else '""'
        if r1 == r2:
            lines[r1 - 1] = lines[r1 - 1][:c1] + filler + lines[r1 - 1][c2:]
        else:
            lines[r1 - 1] = lines[r1 - 1][:c1] + filler
            lines[r2 - 1] = lines[r2 - 1][c2:]
            for r in range(r1, r2 - 1):
                lines[r] = ""
    return list(enumerate(lines, start=1))


def test_source_has_no_way_of_loading_that_unpickles():
    found = []
    for rel, text in _sources():
        for n, line in _code_lines(text):
            for pattern, what in UNSAFE_LOADS.items():
                if re.search(pattern, line):
                    found.append(f"{rel}:{n}: {what}: {line.strip()}")
        code = "\n".join(line for _, line in _code_lines(text))
        for m in re.finditer(r"\btorch\.load\(", code):
            depth, end = 0, m.end() - 1
            for end in range(m.end() - 1, len(code)):  # the whole call, however many lines it spans
                depth += {"(": 1, ")": -1}.get(code[end], 0)
                if depth == 0:
                    break
            call = code[m.start(): end + 1]
            if "weights_only=True" not in call and rel not in TORCH_LOAD_EXCEPTIONS:
                line = code[:m.start()].count("\n") + 1
                found.append(f"{rel}:{line}: torch.load without weights_only=True")
    assert not found, "unsafe loading in src/earmark:\n" + "\n".join(found)


def test_source_writes_files_atomically():
    found = []
    for rel, text in _sources():
        for n, line in _code_lines(text):
            if not re.search(WRITES, line) or "atomic_write" in line:
                continue
            if any(rel == f and snippet in line for f, snippet in WRITE_EXCEPTIONS):
                continue
            found.append(f"{rel}:{n}: {line.strip()}")
    assert not found, ("writes that bypass earmark.utils.files (use atomic_write*, or add a reason to "
                       "WRITE_EXCEPTIONS if the file is not part of a run folder):\n" + "\n".join(found))


class _Planted:
    """Unpickling this creates ``marker``: proof that the loader ran code from the file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_checkpoint_holding_a_pickled_object_is_refused(tmp_path: Path):
    from earmark.training.fit import load_checkpoint

    marker = tmp_path / "pwned"
    ckpt = tmp_path / "last.ckpt"
    torch.save({"epoch": 3, "state_dict": {"w": torch.zeros(2)}, "hook": _Planted(marker)}, ckpt)
    with pytest.raises(RunError, match=r"last\.ckpt: refused to load") as info:
        load_checkpoint(ckpt)
    assert "Delete it" in str(info.value) and not marker.exists()
    torch.save({"epoch": 3, "state_dict": {"w": torch.zeros(2)}}, ckpt)  # a plain one loads
    assert load_checkpoint(ckpt)["epoch"] == 3
    ckpt.write_bytes(ckpt.read_bytes()[:100])  # damaged
    with pytest.raises(RunError, match="damaged"):
        load_checkpoint(ckpt)


def test_resuming_a_run_with_a_tampered_checkpoint_refuses_it(trained_run: Path, synth_data: Path,
                                                               tmp_path: Path):
    from .conftest import FAST

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    member = run / "folds" / "holdout" / "members" / "0"
    (member / "member.json").unlink()  # as if killed while training member 0
    (run / "folds" / "holdout" / "metrics.json").unlink()
    info = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**info, "status": "running"}))
    marker = tmp_path / "pwned"
    torch.save({"epoch": 1, "state_dict": {}, "hook": _Planted(marker)}, member / "checkpoints" / "last.ckpt")
    with pytest.raises(RunError, match=r"members/0/checkpoints/last\.ckpt: refused to load"):
        earmark.train(synth_data, run, "default", FAST, show_progress=False)
    assert not marker.exists()


def test_tampered_run_files_are_refused_when_loading_a_run(trained_run: Path, tmp_path: Path):
    marker = tmp_path / "pwned"
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    config = run / "config.yaml"
    original = config.read_text()
    config.write_text(f"!!python/object/apply:os.system ['touch {marker}']\n" + original)
    with pytest.raises(RunError, match=r"config\.yaml: not plain YAML"):
        earmark.Predictor(run)
    config.write_text(original)

    weights = run / "folds" / "holdout" / "members" / "0" / "model.safetensors"
    saved = weights.read_bytes()
    torch.save({"hook": _Planted(marker)}, weights)  # a pickle where safetensors belong
    with pytest.raises(RunError, match=r"model\.safetensors: cannot load the member's weights"):
        earmark.Predictor(run)
    weights.write_bytes(saved)

    members = json.loads((run / "members.json").read_text())
    members["members"][0]["dir"] = "../../elsewhere"
    (run / "members.json").write_text(json.dumps(members))
    with pytest.raises(RunError, match="is not inside the run"):
        earmark.Predictor(run)
    assert not marker.exists()
