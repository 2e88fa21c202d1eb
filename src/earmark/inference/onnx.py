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

import json
import logging
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..audio.segment import SegmentCutter, SegmentSpec
from ..errors import RunError
from ..run import RunFolder, open_run
from ..utils.files import atomic_write
from .channel_graph import ChannelSelect, ChannelSelected, example_channels, lift_mono, parse_channels
from .graph import WaveformClassifier

log = logging.getLogger(__name__)

INPUT_NAME = "waveform"
OUTPUT_NAMES = ("probabilities", "segment_probabilities")
DEFAULT_OPSET = 18
#: The largest difference allowed between onnxruntime and PyTorch when an export is verified.
VERIFY_TOLERANCE = 1e-4


# ------------------------------------------------------------------------------------------------ export


def _as_run(run: str | Path | RunFolder) -> RunFolder:
    return run if isinstance(run, RunFolder) else open_run(run)


def build_classifier(run_dir: str | Path | RunFolder) -> tuple[WaveformClassifier | ChannelSelected, dict[str, str]]:
    """The run as one :class:`WaveformClassifier` (CPU, eval mode, matrix-product FFT) and its metadata; behind a
    :class:`~earmark.inference.channel_graph.ChannelSelect` (input ``(batch, channels, samples)``) when the run
    hears one channel or mid/side (``audio.channels``).

    ``run_dir``: a finished run folder, or a :class:`RunFolder` already opened (it is not read again).

    Raises:
        RunError: the run is not finished, or has members that cannot be exported (classical models).
    """
    from .members import load_member

    run = _as_run(run_dir)
    recipe, labels = run.recipe(), run.labels()
    entries = run.members()
    if not entries:
        raise RunError(f"{run.path} has no trained members to export")
    classical = [e.dir for e in entries if e.kind in ("classical", "probe")]
    if classical:
        raise RunError(f"{run.path}: members {classical} are classical scikit-learn models or probes, which ONNX "
                       "export does not support yet; export a run of neural networks, or predict with the torch "
                       "backend")
    nets = []
    for e in entries:
        member = load_member(run.path, e, recipe, len(labels), "cpu")
        member.net.set_fft("matmul")
        nets.append(member.net.eval())
    sr = recipe.audio.sample_rate
    s = recipe.segment
    spec = SegmentSpec.from_config(s, sr)
    cutter = SegmentCutter.from_spec(spec)
    voting = run.voting()
    weights = [e.weight for e in entries]
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
        "earmark.segment": json.dumps({"length_s": s.length_s, "hop_s": s.hop_s, "samples": spec.length,
                                       "hop_samples": spec.hop, "short": s.short, "tail": s.tail,
                                       "min_tail_s": s.min_tail_s}),
        "earmark.aggregate": recipe.eval.aggregate,
        "earmark.voting": voting,
        "earmark.members": json.dumps([{"model": e.model or recipe.model.name, "fold": e.fold,
                                        "weight": w} for e, w in zip(entries, weights)]),
        "earmark.tta": json.dumps({"n": recipe.ensemble.tta, "max_shift": recipe.ensemble.tta_shift}),
        "earmark.features": json.dumps(recipe.features.model_dump()),
        "earmark.separation": recipe.audio.separation,
        "earmark.channels": str(channels),
        "earmark.run_fingerprint": run.digest(),  # key kept so files exported before still match
        "earmark.version": __version__,
        "earmark.inputs": ("waveform: float32 (batch, samples), mono at earmark.sample_rate Hz" if channels == "mix"
                           else f"waveform: float32 (batch, channels, samples) at earmark.sample_rate Hz; the graph "
                                f"keeps audio.channels={channels}"),
        "earmark.outputs": "probabilities (batch, classes); segment_probabilities (batch, n_segments, classes)",
    }
    return model, meta


def export_onnx(run_dir: str | Path | RunFolder, out_path: str | Path | None = None, *, opset: int = DEFAULT_OPSET,
                verify: bool = True, input_rate: int | None = None) -> Path:
    """Export a finished run to one ONNX file (waveform in, probabilities out); returns its path.

    Args:
        run_dir: a finished run folder.
        out_path: the file to write (default ``RUN/model.onnx``); written atomically.
        opset: the ONNX opset.
        verify: run the written file in onnxruntime on test signals and refuse it (``RunError``, file
            removed) when it differs from PyTorch by more than ``VERIFY_TOLERANCE``.
        input_rate: the rate the graph's input is at, when not the run's: a band-limited resampler
            (:class:`earmark.audio.resample.Resample`) is built in, recorded as ``earmark.input_rate``.
    """
    return export_and_verify(run_dir, out_path, opset=opset, verify=verify, input_rate=input_rate)[0]


def export_and_verify(run_dir: str | Path | RunFolder, out_path: str | Path | None = None, *,
                      opset: int = DEFAULT_OPSET, verify: bool = True, input_rate: int | None = None
                      ) -> tuple[Path, float | None]:
    """:func:`export_onnx`, also returning the largest difference from PyTorch (``None`` unverified)."""
    import onnx

    model, meta = build_classifier(run_dir)
    run_dir = run_dir.path if isinstance(run_dir, RunFolder) else Path(run_dir)
    out = Path(out_path) if out_path else run_dir / "model.onnx"
    if input_rate and input_rate != int(meta["earmark.sample_rate"]):  # --input-rate: resample inside the graph
        from ..audio.resample import ResampledInput

        model_rate = int(meta["earmark.sample_rate"])
        if isinstance(model, ChannelSelected):  # select the channel first, then resample one signal
            model = ChannelSelected(model.select, ResampledInput(model.classifier, input_rate, model_rate)).eval()
        else:
            model = ResampledInput(model, input_rate, model_rate).eval()  # type: ignore[assignment]
        meta["earmark.input_rate"] = str(input_rate)
        meta["earmark.inputs"] = meta["earmark.inputs"].replace("earmark.sample_rate Hz",
                                                                f"{input_rate} Hz (earmark.input_rate)")
        out = Path(out_path) if out_path else run_dir / f"model-{input_rate}hz.onnx"  # never the run's own model.onnx
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
    if program is None:  # the dynamo exporter always returns a program; None only from the legacy one
        raise RunError(f"the ONNX export of {run_dir} produced no program")
    proto = program.model_proto
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    rate = meta.get("earmark.input_rate", meta["earmark.sample_rate"])
    shape = "batch, samples" if example.ndim == 2 else "batch, channels, samples"
    proto.doc_string = (f"earmark run {run_dir.name}: waveform ({shape}) at {rate} Hz "
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
        x = _test_input(model, batch, samples, onnx_model.input_rate, seed=samples)
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
        self.sample_rate = int(self.metadata["earmark.sample_rate"])  # the run's rate
        #: the rate the graph's input must be at: the run's, unless exported with --input-rate
        self.input_rate = int(self.metadata.get("earmark.input_rate", self.sample_rate))
        self.segment: dict[str, Any] = json.loads(self.metadata["earmark.segment"])
        self.segment_samples = int(self.segment["samples"])
        #: :meth:`RunFolder.digest` of the run it was exported from
        self.digest = self.metadata.get("earmark.run_fingerprint", "")
        #: ``audio.channels`` of the run; other than ``mix``, the graph takes ``(batch, channels, samples)``.
        self.channels = parse_channels(self.metadata.get("earmark.channels", "mix"))

    def run(self, waves: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(probabilities (batch, classes), segment_probabilities (batch, n_segments, classes))``.

        ``waves``: float32 ``(batch, samples)`` (or one ``(samples,)`` signal) at :attr:`input_rate`; for a run
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
