"""ONNX export and runtime: one graph from a raw waveform to class probabilities.

    >>> export_onnx("runs/esc10", "esc10.onnx")
    >>> import onnxruntime as ort, numpy as np
    >>> sess = ort.InferenceSession("esc10.onnx")
    >>> probs, seg_probs = sess.run(None, {"waveform": wave[None].astype(np.float32)})

The graph does everything :class:`~earmark.inference.predictor.Predictor` does after decoding:

1. cut the input ``(batch, samples)`` (float32 at the run's sample rate, any length) into the run's
   segments (length, hop, tail policy, short-input policy), ``(batch, n_segments, segment_samples)``;
2. run every member (filter bank -> normalisation -> backbone -> softmax; the STFT is a strided
   convolution with the windowed DFT basis, so no ONNX STFT or complex ops are needed), with the run's
   test-time shifts;
3. combine the members as the run does (soft or hard voting, the weights of ``members.json``);
4. aggregate segments to one answer per input (``eval.aggregate``: mean, sum or vote).

Outputs: ``probabilities`` ``(batch, classes)`` and ``segment_probabilities``
``(batch, n_segments, classes)``. Labels, sample rate, segment and aggregation settings travel in the
file's ``metadata_props`` (keys ``earmark.*``), so a user needs only onnxruntime and the file.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..ensemble import tta_shifts
from ..errors import RunError
from ..run import open_run
from ..utils.files import atomic_write, read_json
from .channel_graph import ChannelSelect, ChannelSelected, example_channels, lift_mono, parse_channels

log = logging.getLogger(__name__)

INPUT_NAME = "waveform"
OUTPUT_NAMES = ("probabilities", "segment_probabilities")
DEFAULT_OPSET = 18
#: The largest difference allowed between onnxruntime and PyTorch when an export is verified.
VERIFY_TOLERANCE = 1e-4


def _indicator(value: Any) -> Any:
    """1 if the (symbolic) integer ``value`` is positive, else 0, without Python branching."""
    return torch.sym_min(torch.sym_max(value, 0), 1)


class SegmentCutter(nn.Module):
    """Waveforms ``(batch, samples)`` -> segments ``(batch, n_segments, length)``, as ``segment_starts``.

    Written with shape arithmetic only (no data-dependent branches), so one exported graph serves every
    input length. ``tail``: ``align`` (a last segment ending at the end), ``pad`` (one zero-padded
    segment if at least ``max(1, min_tail)`` samples remain) or ``drop``. An input shorter than one
    segment gives one segment, zero-padded (``short="pad"``) or looped (``short="repeat"``); with
    ``short="drop"`` it is zero-padded too (a graph has to answer; the Predictor drops such files itself).
    """

    def __init__(self, length: int, hop: int, tail: str = "align", short: str = "pad", min_tail: int = 0) -> None:
        super().__init__()
        if length <= 0 or hop <= 0:
            raise ValueError(f"segment length and hop must be positive, got {length} and {hop}")
        if tail not in ("align", "pad", "drop"):
            raise ValueError(f"unknown tail policy {tail!r}")
        if short not in ("pad", "repeat", "drop"):
            raise ValueError(f"unknown short-input policy {short!r}")
        self.length, self.hop, self.tail, self.short = int(length), int(hop), tail, short
        self.min_tail = max(1, int(min_tail))

    def forward(self, wave: Tensor) -> Tensor:
        n, length, hop = wave.shape[1], self.length, self.hop
        rest = torch.sym_max(n - length, 0)  # room for starts after 0
        if self.tail == "align":
            count = (rest + hop - 1) // hop + 1
        else:
            count = rest // hop + 1
            if self.tail == "pad":
                next_start = count * hop
                last_end = next_start - hop + length
                count = count + (_indicator(n - length + 1) * _indicator(n - last_end)
                                 * _indicator(n - next_start - self.min_tail + 1))
        starts = torch.arange(count, device=wave.device) * hop
        if self.tail == "align":
            starts = starts.clamp(max=rest)
        index = starts[:, None] + torch.arange(length, device=wave.device)[None, :]  # (n_segments, length)
        padded = nn.functional.pad(wave, (0, length))
        if self.short == "repeat":
            # Loop a short input: index modulo its length (never wraps for inputs of a segment or more).
            modulus = torch.full((), n + length * _indicator(n - length + 1), dtype=index.dtype, device=wave.device)
            index = index % modulus
        return padded[:, index]


class WaveformClassifier(nn.Module):
    """A whole run as one module: waveforms ``(batch, samples)`` -> ``(probabilities, segment_probabilities)``.

    ``probabilities``: ``(batch, classes)``; ``segment_probabilities``: ``(batch, n_segments, classes)``.
    """

    def __init__(self, nets: list[nn.Module], weights: list[float], voting: str, aggregate: str,
                 cutter: SegmentCutter, tta: int = 1, tta_shift: float = 0.0) -> None:
        super().__init__()
        w = np.asarray(weights, dtype=np.float64)
        if len(nets) == 0 or w.shape != (len(nets),) or (w < 0).any() or w.sum() <= 0:
            raise RunError("an export needs at least one member and one non-negative weight per member")
        if voting not in ("soft", "hard"):
            raise RunError(f"unknown voting {voting!r} in members.json; use soft or hard")
        if aggregate not in ("mean", "sum", "vote"):
            raise RunError(f"unknown eval.aggregate {aggregate!r}; use mean, sum or vote")
        self.nets = nn.ModuleList(nets)
        self.register_buffer("weights", torch.from_numpy(w / w.sum()), persistent=False)  # float64
        self.voting, self.aggregate, self.cutter = voting, aggregate, cutter
        self.shifts = [int(round(s * cutter.length)) for s in tta_shifts(tta, tta_shift)]

    def member_probs(self, net: nn.Module, segments: Tensor) -> Tensor:
        """Softmax of one member, averaged over the test-time shifts: ``(n, L)`` -> ``(n, classes)``."""
        total = None
        for shift in self.shifts:
            x = segments if shift == 0 else torch.roll(segments, shift, dims=1)
            p = torch.softmax(net(x).float(), dim=1)
            total = p if total is None else total + p
        return total / len(self.shifts)

    def combine(self, segments: Tensor) -> Tensor:
        """The members' vote on segments ``(n, L)`` -> ``(n, classes)`` (as :func:`earmark.ensemble.vote`).

        The vote is computed in float64 and rounded to float32, as the Predictor does, so the 1e-6 tie-break
        of hard voting rounds the same way (it decides ties when the segments are then counted).
        """
        probs = torch.stack([self.member_probs(net, segments) for net in self.nets]).double()  # (members, n, C)
        weights = self.weights[:, None, None]
        soft = (probs * weights).sum(0)
        if self.voting == "soft":
            return soft.float()
        classes = torch.arange(probs.shape[2], device=probs.device)
        chosen = (probs.argmax(dim=2, keepdim=True) == classes).double()  # one-hot (members, n, classes)
        share = (chosen * weights).sum(0)
        return (share * (1 - 1e-6) + 1e-6 * soft).float()

    def track(self, seg_probs: Tensor) -> Tensor:
        """Segments ``(batch, n_segments, classes)`` -> one answer ``(batch, classes)`` (``aggregate_track``)."""
        if self.aggregate == "vote":
            classes = torch.arange(seg_probs.shape[2], device=seg_probs.device)
            votes = (seg_probs.argmax(dim=2, keepdim=True) == classes).float().mean(1)
            return votes + 1e-6 * seg_probs.mean(1)
        total = seg_probs.sum(1)
        return total / total.sum(dim=1, keepdim=True)

    def forward(self, wave: Tensor) -> tuple[Tensor, Tensor]:
        segs = self.cutter(wave)
        batch, n_segments, length = segs.shape
        seg_probs = self.combine(segs.reshape(batch * n_segments, length)).reshape(batch, n_segments, -1)
        return self.track(seg_probs), seg_probs


# ------------------------------------------------------------------------------------------------ export


def run_fingerprint(run_dir: str | Path) -> str:
    """A hash of what a run predicts with (settings, labels, members and their weights)."""
    run = Path(run_dir)
    h = hashlib.sha256()
    for name in ("config.yaml", "labels.json", "members.json"):
        h.update((run / name).read_bytes())
    for entry in read_json(run / "members.json")["members"]:
        weights = run / entry["dir"] / "model.safetensors"
        if weights.is_file():
            with open(weights, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()


def build_classifier(run_dir: str | Path) -> tuple[WaveformClassifier | ChannelSelected, dict[str, str]]:
    """The run as one :class:`WaveformClassifier` (CPU, eval mode, matrix-product FFT) and its metadata; behind a
    :class:`~earmark.inference.channel_graph.ChannelSelect` (input ``(batch, channels, samples)``) when the run
    hears one channel or mid/side (``audio.channels``).

    Raises:
        RunError: the run is not finished, or has members that cannot be exported (classical models).
    """
    from .members import load_member

    run = open_run(run_dir)
    recipe, labels = run.recipe(), run.labels()
    info = read_json(run.file("members.json"))
    entries = info["members"]
    if not entries:
        raise RunError(f"{run.path} has no trained members to export")
    classical = [e["dir"] for e in entries if e.get("kind", "net") == "classical"]
    if classical:
        raise RunError(f"{run.path}: members {classical} are classical scikit-learn models, which ONNX export "
                       "does not support yet; export a run of neural networks, or predict with the torch backend")
    nets = []
    for e in entries:
        member = load_member(run.path, e, recipe, len(labels), "cpu")
        member.net.set_fft("matmul")
        nets.append(member.net.eval())
    sr = recipe.audio.sample_rate
    s = recipe.segment
    length, hop = int(round(s.length_s * sr)), int(round(s.hop_s * sr))
    cutter = SegmentCutter(length, hop, s.tail, s.short, int(round(s.min_tail_s * sr)))
    voting = info.get("voting", recipe.ensemble.voting)
    weights = [float(e.get("weight", 1.0)) for e in entries]
    mono = WaveformClassifier(nets, weights, voting, recipe.eval.aggregate, cutter, recipe.ensemble.tta,
                              recipe.ensemble.tta_shift).eval()
    channels = recipe.audio.channels
    model = mono if channels == "mix" else ChannelSelected(ChannelSelect(channels), mono).eval()
    if recipe.audio.separation != "none":
        log.warning("%s separates vocals (%s) before its features; the ONNX graph starts after that step, so "
                    "feed it separated audio (earmark predict --backend onnx does)", run.path, recipe.audio.separation)
    from .. import __version__

    meta = {
        "earmark.labels": json.dumps(labels),
        "earmark.sample_rate": str(sr),
        "earmark.segment": json.dumps({"length_s": s.length_s, "hop_s": s.hop_s, "samples": length,
                                       "hop_samples": hop, "short": s.short, "tail": s.tail,
                                       "min_tail_s": s.min_tail_s}),
        "earmark.aggregate": recipe.eval.aggregate,
        "earmark.voting": voting,
        "earmark.members": json.dumps([{"model": e.get("model") or recipe.model.name, "fold": e.get("fold"),
                                        "weight": w} for e, w in zip(entries, weights)]),
        "earmark.tta": json.dumps({"n": recipe.ensemble.tta, "max_shift": recipe.ensemble.tta_shift}),
        "earmark.features": json.dumps(recipe.features.model_dump()),
        "earmark.separation": recipe.audio.separation,
        "earmark.channels": str(channels),
        "earmark.run_fingerprint": run_fingerprint(run.path),
        "earmark.version": __version__,
        "earmark.inputs": ("waveform: float32 (batch, samples), mono at earmark.sample_rate Hz" if channels == "mix"
                           else f"waveform: float32 (batch, channels, samples) at earmark.sample_rate Hz; the graph "
                                f"keeps audio.channels={channels}"),
        "earmark.outputs": "probabilities (batch, classes); segment_probabilities (batch, n_segments, classes)",
    }
    return model, meta


def export_onnx(run_dir: str | Path, out_path: str | Path | None = None, *, opset: int = DEFAULT_OPSET,
                verify: bool = True) -> Path:
    """Export a finished run to one ONNX file (waveform in, probabilities out); returns its path.

    Args:
        run_dir: a finished run folder.
        out_path: the file to write (default ``RUN/model.onnx``); written atomically.
        opset: the ONNX opset.
        verify: run the written file in onnxruntime on test signals and refuse it (``RunError``, file
            removed) when it differs from PyTorch by more than ``VERIFY_TOLERANCE``.
    """
    return export_and_verify(run_dir, out_path, opset=opset, verify=verify)[0]


def export_and_verify(run_dir: str | Path, out_path: str | Path | None = None, *, opset: int = DEFAULT_OPSET,
                      verify: bool = True) -> tuple[Path, float | None]:
    """:func:`export_onnx`, also returning the largest difference from PyTorch (``None`` unverified)."""
    import onnx

    run_dir = Path(run_dir)
    out = Path(out_path) if out_path else run_dir / "model.onnx"
    model, meta = build_classifier(run_dir)
    length = model.cutter.length
    example = _test_input(model, 2, length + model.cutter.hop + length // 3, int(meta["earmark.sample_rate"]))
    dims = ({0: torch.export.Dim("batch", min=1, max=1 << 20), example.ndim - 1: torch.export.Dim("samples", min=1,
                                                                                                  max=1 << 31)},)
    if isinstance(model, ChannelSelected):
        dims[0][1] = torch.export.Dim("channels", min=model.select.needed, max=64)
    t0 = time.perf_counter()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model, (torch.from_numpy(example),), dynamic_shapes=dims, dynamo=True,
                                    input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES), opset_version=opset,
                                    verbose=False, optimize=True)
    proto = program.model_proto
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.doc_string = (f"earmark run {run_dir.name}: waveform ({'batch, samples' if example.ndim == 2 else 'batch, channels, samples'}) at {meta['earmark.sample_rate']} Hz "
                        "-> class probabilities; labels in metadata earmark.labels")
    atomic_write(out, lambda p: onnx.save(proto, str(p)))
    log.info("exported %s to %s in %.1f s", run_dir, out, time.perf_counter() - t0)
    if not verify:
        return out, None
    diff = verify_export(model, out)
    if diff > VERIFY_TOLERANCE:
        out.unlink(missing_ok=True)
        raise RunError(f"the ONNX export of {run_dir} differs from PyTorch by {diff:.2e} (more than "
                       f"{VERIFY_TOLERANCE:g}); the file was not kept")
    return out, diff


def _test_signal(batch: int, samples: int, sample_rate: int, seed: int = 0) -> np.ndarray:
    """Noise plus a chirp, float32 ``(batch, samples)``: exercises every band of the filter bank."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / sample_rate
    chirp = 0.3 * np.sin(2 * np.pi * (100 + 0.25 * sample_rate * t / max(t[-1], 1e-9)) * t)
    return (chirp[None, :] + 0.1 * rng.standard_normal((batch, samples))).astype(np.float32)


def _test_input(model: nn.Module, batch: int, samples: int, sample_rate: int, seed: int = 0) -> np.ndarray:
    """:func:`_test_signal` shaped for ``model``'s input: ``(batch, samples)``, or ``(batch, channels, samples)``
    (distinct signals per channel) for a :class:`ChannelSelected`."""
    if not isinstance(model, ChannelSelected):
        return _test_signal(batch, samples, sample_rate, seed)
    n = example_channels(model.select.channels)
    return _test_signal(batch * n, samples, sample_rate, seed).reshape(batch, n, samples)


@torch.no_grad()
def verify_export(model: WaveformClassifier | ChannelSelected, path: str | Path) -> float:
    """Largest absolute difference between PyTorch and onnxruntime, over a few lengths and batch sizes."""
    onnx_model = OnnxModel(path)
    length, hop = model.cutter.length, model.cutter.hop
    worst = 0.0
    for batch, samples in ((1, length), (3, 2 * length + hop // 2 + 7)):
        x = _test_input(model, batch, samples, onnx_model.sample_rate, seed=samples)
        ref = [t.numpy() for t in model(torch.from_numpy(x))]
        got = onnx_model.run(x)
        worst = max(worst, *(float(np.abs(a - b).max()) for a, b in zip(ref, got)))
    return worst


# ----------------------------------------------------------------------------------------------- runtime


class OnnxModel:
    """An exported earmark model in onnxruntime: waveforms or segments in, probabilities out.

    Everything it needs (labels, sample rate, segment settings) is read from the file's metadata.
    """

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise RunError(f"{self.path} does not exist; create it with `earmark export RUN --out {self.path}`")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        # Idle worker threads sleep instead of spinning: polite on shared machines and in a busy server.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own untyped errors
            raise RunError(f"{self.path} is not a loadable ONNX model ({str(exc)[:200]})") from None
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)
        if "earmark.labels" not in self.metadata:
            raise RunError(f"{self.path} was not exported by earmark (no earmark.labels metadata); "
                           "export it with `earmark export`")
        self.labels: list[str] = json.loads(self.metadata["earmark.labels"])
        self.sample_rate = int(self.metadata["earmark.sample_rate"])
        self.segment: dict[str, Any] = json.loads(self.metadata["earmark.segment"])
        self.segment_samples = int(self.segment["samples"])
        self.fingerprint = self.metadata.get("earmark.run_fingerprint", "")
        #: ``audio.channels`` of the run; other than ``mix``, the graph takes ``(batch, channels, samples)``.
        self.channels = parse_channels(self.metadata.get("earmark.channels", "mix"))

    def run(self, waves: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(probabilities (batch, classes), segment_probabilities (batch, n_segments, classes))``.

        ``waves``: float32 ``(batch, samples)`` (or one ``(samples,)`` signal) at :attr:`sample_rate`; for a run
        that hears one channel (:attr:`channels` not ``mix``), ``(batch, channels, samples)`` (or one
        ``(channels, samples)`` file).
        """
        x = np.asarray(waves, dtype=np.float32)
        rank = 2 if self.channels == "mix" else 3
        if x.ndim == rank - 1:
            x = x[None]
        if x.ndim != rank or x.shape[-1] == 0:
            shape = "(batch, samples)" if rank == 2 else "(batch, channels, samples)"
            raise ValueError(f"expected waveforms {shape}, got shape {x.shape}")
        probs, seg_probs = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: np.ascontiguousarray(x)})
        return probs, seg_probs

    def predict_segments(self, segments: np.ndarray) -> np.ndarray:
        """Probabilities ``(n, classes)`` for segments ``(n, segment_samples)`` (each is its own input)."""
        segments = np.asarray(segments, dtype=np.float32)
        if segments.ndim != 2 or segments.shape[1] != self.segment_samples:
            raise ValueError(f"expected segments (n, {self.segment_samples}), got shape {segments.shape}")
        if segments.shape[0] == 0:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        if self.channels != "mix":  # already-selected audio: the input whose selection it is
            return self.run(lift_mono(segments, self.channels))[1][:, 0, :]
        return self.run(segments)[1][:, 0, :]
