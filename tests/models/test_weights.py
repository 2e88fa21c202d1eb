"""Named checkpoints: found in EARMARK_WEIGHTS, downloaded once from a (local) server, hash-checked, refused
when the hash differs or is not pinned, and a clear error offline. Never touches the network."""
from __future__ import annotations

import dataclasses
import hashlib
import http.server
import socket
import threading
from pathlib import Path

import pytest
import torch

from earmark.errors import ConfigError, WeightsError
from earmark.models import weights
from earmark.models.weights import CHECKPOINTS, load_state_dict_file, resolve_weights

from ..conftest import shared_weights

MN04_SHA = "899a8c6217063f6941793102a2780b3dd788ab11fce468d9cf5f0577c453321c"


@pytest.fixture()
def weights_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "weights"
    monkeypatch.setenv("EARMARK_WEIGHTS", str(folder))
    monkeypatch.delenv("EARMARK_OFFLINE", raising=False)
    monkeypatch.delenv("EARMARK_ALLOW_UNPINNED", raising=False)
    return folder


@pytest.fixture()
def server(tmp_path: Path):
    """A local HTTP server over a folder, in a thread; records the paths it was asked for."""
    root = tmp_path / "www"
    root.mkdir()
    asked: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def do_GET(self):
            asked.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}/", asked
    httpd.shutdown()
    httpd.server_close()


class Payload:
    """An object in a checkpoint: unpickling it would run its code."""

    unpickled = False

    def __setstate__(self, state):
        Payload.unpickled = True
        self.__dict__.update(state)


def _small_checkpoint(path: Path) -> str:
    torch.save({"w": torch.arange(6.0).reshape(2, 3), "b": torch.ones(2)}, path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_known_checkpoints_table():
    mn04 = CHECKPOINTS["mn04_as"]
    assert mn04.file == "mn04_as_mAP_432.pt" and mn04.sha256 == MN04_SHA and mn04.model == "mn04"
    assert mn04.source == "https://github.com/fschmid56/EfficientAT/releases/download/v0.0.1/mn04_as_mAP_432.pt"
    assert {f"mn{w}_as" for w in ("01", "02", "04", "05", "10", "20", "30", "40")} == set(CHECKPOINTS)
    assert all(c.sha256 is None for n, c in CHECKPOINTS.items() if n != "mn04_as")  # only what was verified


def test_a_name_is_found_in_the_weights_folder_and_its_hash_checked(monkeypatch):
    real = shared_weights("mn04_as_mAP_432.pt")
    monkeypatch.setenv("EARMARK_WEIGHTS", str(real.parent))
    assert resolve_weights("mn04_as") == real
    state = load_state_dict_file(resolve_weights("mn04_as"))
    assert len(state) == 312 and state["classifier.5.weight"].shape == (527, 512)  # as the README states


def test_a_path_is_used_as_given_and_a_missing_one_is_named(tmp_path, weights_dir):
    own = tmp_path / "mine.pt"
    _small_checkpoint(own)
    assert resolve_weights(own) == own and resolve_weights(str(own)) == own
    with pytest.raises(WeightsError, match="not a known checkpoint name"):
        resolve_weights(tmp_path / "nope.pt")


def test_a_local_file_with_the_wrong_hash_is_refused(weights_dir):
    weights_dir.mkdir(parents=True)
    (weights_dir / "mn04_as_mAP_432.pt").write_bytes(b"something else")
    with pytest.raises(WeightsError, match="differs from the pinned") as info:
        resolve_weights("mn04_as")
    assert isinstance(info.value, ConfigError) and MN04_SHA in str(info.value)


def test_offline_and_missing_says_what_to_get_and_where_to_put_it(weights_dir, monkeypatch):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    entry = dataclasses.replace(CHECKPOINTS["mn04_as"], url=f"http://127.0.0.1:{port}/mn04_as_mAP_432.pt")
    monkeypatch.setitem(CHECKPOINTS, "mn04_as", entry)
    with pytest.raises(WeightsError) as info:
        resolve_weights("mn04_as")
    message = str(info.value)
    assert "mn04_as_mAP_432.pt" in message and str(weights_dir) in message and entry.source in message
    assert "model.weights" in message
    assert not weights_dir.exists() or not any(weights_dir.iterdir())  # no partial file left
    monkeypatch.setenv("EARMARK_OFFLINE", "1")
    with pytest.raises(WeightsError, match="EARMARK_OFFLINE"):
        resolve_weights("mn04_as")


def test_training_without_its_checkpoint_fails_before_decoding_anything(weights_dir, monkeypatch, tmp_path):
    import earmark

    from ..conftest import make_class_folders

    monkeypatch.setenv("EARMARK_OFFLINE", "1")
    data = make_class_folders(tmp_path / "data", per_class=2)
    with pytest.raises(WeightsError, match="mn04_as_mAP_432.pt"):
        earmark.train(data, tmp_path / "run", "singer-gender", show_progress=False)
    assert not (tmp_path / "run").exists()  # it stopped before making the run folder


def test_download_from_a_local_server_once(server, weights_dir, monkeypatch):
    root, base, asked = server
    sha = _small_checkpoint(root / "tiny.pt")
    monkeypatch.setitem(CHECKPOINTS, "mn04_as", dataclasses.replace(CHECKPOINTS["mn04_as"], file="tiny.pt",
                                                                    url=base + "tiny.pt", sha256=sha))
    path = resolve_weights("mn04_as")
    assert path == weights_dir / "tiny.pt" and path.read_bytes() == (root / "tiny.pt").read_bytes()
    assert sorted(p.name for p in weights_dir.iterdir()) == ["tiny.pt"]  # the temporary file is gone
    torch.testing.assert_close(load_state_dict_file(path)["w"], torch.arange(6.0).reshape(2, 3))
    assert resolve_weights("mn04_as") == path and asked == ["/tiny.pt"]  # found the second time: one download


def test_a_download_with_the_wrong_hash_is_refused_and_not_kept(server, weights_dir, monkeypatch):
    root, base, _ = server
    _small_checkpoint(root / "tiny.pt")
    monkeypatch.setitem(CHECKPOINTS, "mn04_as", dataclasses.replace(CHECKPOINTS["mn04_as"], file="tiny.pt",
                                                                    url=base + "tiny.pt", sha256="0" * 64))
    with pytest.raises(WeightsError, match="refused and deleted"):
        resolve_weights("mn04_as")
    assert not any(weights_dir.iterdir())


def test_an_unpinned_checkpoint_needs_explicit_consent(server, weights_dir, monkeypatch):
    root, base, asked = server
    _small_checkpoint(root / "tiny.pt")
    monkeypatch.setitem(CHECKPOINTS, "mn10_as", dataclasses.replace(CHECKPOINTS["mn10_as"], file="tiny.pt",
                                                                    url=base + "tiny.pt"))
    with pytest.raises(WeightsError, match="EARMARK_ALLOW_UNPINNED"):
        resolve_weights("mn10_as")
    assert asked == []
    monkeypatch.setenv("EARMARK_ALLOW_UNPINNED", "1")
    assert resolve_weights("mn10_as").is_file()


def test_weights_files_are_never_unpickled(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.ones(2, 2)}, str(tmp_path / "w.safetensors"))
    assert set(load_state_dict_file(tmp_path / "w.safetensors")) == {"w"}
    torch.save({"state_dict": {"w": torch.ones(1)}}, tmp_path / "nested.pt")
    assert set(load_state_dict_file(tmp_path / "nested.pt")) == {"w"}
    payload = Payload()
    payload.x = 1
    torch.save({"w": torch.ones(1), "code": payload}, tmp_path / "pickled.pt")
    with pytest.raises(WeightsError, match="weights_only"):
        load_state_dict_file(tmp_path / "pickled.pt")
    assert not Payload.unpickled


def test_class_names_of_the_audioset_checkpoints(monkeypatch):
    labels = shared_weights("audioset_class_labels_indices.csv")
    monkeypatch.setenv("EARMARK_WEIGHTS", str(labels.parent))
    names = weights.class_names("mn04_as")
    assert len(names) == 527 and names[0] == "Speech" and "Subway, metro, underground" in names
