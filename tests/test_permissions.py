"""Files earmark writes get the permissions the umask gives (0644 under 022), not the 0600 of a temp file."""
from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from earmark.utils.files import atomic_write_bytes, atomic_write_json, current_umask


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask() -> Iterator[callable]:
    before = os.umask(0o022)
    os.umask(before)

    def set_(mask: int) -> None:
        os.umask(mask)

    yield set_
    os.umask(before)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_atomic_writes_follow_the_umask(tmp_path: Path, umask, mask: int, expected: int):
    umask(mask)
    assert current_umask() == mask
    atomic_write_bytes(tmp_path / "a.bin", b"x")
    atomic_write_json(tmp_path / "sub" / "b.json", {"a": 1})
    assert _mode(tmp_path / "a.bin") == expected and _mode(tmp_path / "sub" / "b.json") == expected
    atomic_write_bytes(tmp_path / "a.bin", b"y")  # replacing keeps it too
    assert _mode(tmp_path / "a.bin") == expected


def test_run_folder_store_and_onnx_are_shareable(trained_run: Path, tmp_path: Path, umask):
    # The session's run was written under the test process's umask: every file readable as that umask says.
    mask = current_umask()
    files = [p for p in trained_run.rglob("*") if p.is_file()]
    store = [p for p in Path(os.environ["EARMARK_CACHE"]).rglob("*") if p.is_file()]
    assert files and store
    wrong = [(str(p), oct(_mode(p))) for p in files + store if _mode(p) & 0o666 != 0o666 & ~mask]
    assert not wrong, wrong[:5]
    from earmark.inference.onnx import export_onnx

    umask(0o022)
    out = export_onnx(trained_run, tmp_path / "model.onnx")
    assert _mode(Path(out)) == 0o644
