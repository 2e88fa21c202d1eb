"""Pretrained weights (``model.pretrained: NAME`` or ``PATH``, ``model.weights: PATH``): load, adapt, replace
the head.

A name (``mn04_as``) is a known checkpoint found or downloaded by :mod:`earmark.models.weights` (sha256
checked); a path is a local file.

The file is a safetensors file or a torch checkpoint read with ``weights_only=True`` (no pickled code
runs): a bare state dict, or one nested under ``state_dict`` / ``model`` / ``model_state_dict`` /
``module`` / ``net`` / ``ema`` / ``weights`` (Lightning, DDP and most training scripts). Key prefixes
such as ``module.``, ``model.`` or ``net.backbone.`` are found by matching against the network's own keys,
so an ImageNet checkpoint of a timm model, a Lightning checkpoint or another earmark run's
``model.safetensors`` all load. Then:

- the first convolution is adapted to our input channels: an RGB kernel summed into 1 channel, or a
  kernel repeated over more channels and scaled (as timm's ``adapt_input_conv``);
- the classifier head (``get_classifier()`` for timm models, ``.head`` for earmark's own) keeps its new
  initialisation when its shape differs (another number of classes); any other tensor whose shape differs
  is skipped and reported.

With ``model.head_labels`` ({class: label of the pretrained head}) the new head starts from the pretrained
head's rows for those labels (:func:`head_from_labels`): before any training it answers as the pretrained
network would, choosing among the named labels (a zero-shot classifier; ``train.epochs: 0`` keeps it so).

Nothing is downloaded except a named checkpoint (see :mod:`.weights`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from ..errors import ConfigError

log = logging.getLogger(__name__)


@dataclass
class PretrainedReport:
    """What :func:`load_pretrained` did with each tensor of the file."""

    path: str
    checkpoint: str | None = None                             # the known checkpoint's name, if one was named
    loaded: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)          # first convolution, channels adapted
    skipped: dict[str, str] = field(default_factory=dict)     # key -> reason (head, shape mismatch)
    missing: list[str] = field(default_factory=list)          # model keys the file did not have
    unused: list[str] = field(default_factory=list)           # file keys the model does not have
    prefix: str = ""

    def summary(self) -> dict[str, Any]:
        """A JSON-friendly account (recorded in the member's information)."""
        return {"path": self.path, **({"checkpoint": self.checkpoint} if self.checkpoint else {}),
                "prefix_stripped": self.prefix, "loaded": len(self.loaded),
                "adapted": self.adapted, "skipped": self.skipped, "missing": self.missing[:20],
                "n_missing": len(self.missing), "n_unused": len(self.unused), "unused": self.unused[:20]}

    def describe(self) -> str:
        parts = [f"{len(self.loaded)} tensors loaded from {self.path}"]
        if self.adapted:
            parts.append(f"input channels adapted: {', '.join(self.adapted)}")
        if self.skipped:
            parts.append(f"{len(self.skipped)} kept new ({', '.join(sorted(self.skipped)[:4])})")
        if self.missing:
            parts.append(f"{len(self.missing)} not in the file")
        if self.unused:
            parts.append(f"{len(self.unused)} in the file unused")
        return "; ".join(parts)


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """The tensors of a weights file (see :func:`earmark.models.weights.load_state_dict_file`)."""
    from .weights import load_state_dict_file

    return load_state_dict_file(path)


def _strip_prefix(keys: list[str], targets: set[str]) -> str:
    """The leading dotted prefix whose removal makes the most keys match ``targets`` ('' if none helps)."""
    best, best_hits = "", sum(k in targets for k in keys)
    candidates: set[str] = set()
    for k in keys:
        parts = k.split(".")
        for depth in range(1, min(4, len(parts))):
            candidates.add(".".join(parts[:depth]) + ".")
    for prefix in sorted(candidates, key=len):
        hits = sum(k.startswith(prefix) and k[len(prefix):] in targets for k in keys)
        if hits > best_hits:
            best, best_hits = prefix, hits
    return best


def first_conv(model: nn.Module) -> str | None:
    """Name of the first convolution (in registration order), the one that sees the input channels."""
    for name, mod in model.named_modules():
        if isinstance(mod, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            return name
    return None


def classifier_head(model: nn.Module) -> nn.Module:
    """The classifier head: timm models' ``get_classifier()``, else a ``head`` (earmark's own networks)."""
    model = getattr(model, "_orig_mod", model)  # torch.compile wrapper
    if hasattr(model, "get_classifier"):
        head = model.get_classifier()  # type: ignore[operator]
        if isinstance(head, nn.Module):
            return head
    head = getattr(model, "head", None)
    if isinstance(head, nn.Module):
        return head
    raise ConfigError(f"{type(model).__name__} has no recognisable classifier head (get_classifier() or .head); "
                      "it cannot be fine-tuned with a frozen backbone")


def freeze_first_blocks(model: nn.Module, n: int) -> list[str]:
    """Freeze (``requires_grad=False``) the first ``n`` stages of ``model.features`` (a sequence of blocks, as
    EfficientAT and MobileNets have); returns the names of the frozen stages."""
    model = getattr(model, "_orig_mod", model)
    blocks = getattr(model, "features", None)
    if not isinstance(blocks, nn.Sequential):
        raise ConfigError(f"model.freeze_blocks: {type(model).__name__} has no sequence of blocks (.features); "
                          "use model.freeze_backbone to train only its head")
    if n > len(blocks):
        raise ConfigError(f"model.freeze_blocks={n}, but {type(model).__name__} has {len(blocks)} blocks")
    names = []
    for i in range(n):
        for p in blocks[i].parameters():
            p.requires_grad_(False)
        names.append(f"features.{i}")
    return names


def adapt_channels(weight: Tensor, in_chans: int) -> Tensor:
    """A first-convolution kernel ``(out, in, ...)`` for ``in_chans`` inputs: summed into 1, or repeated and
    scaled by ``in / in_chans`` so the response to a repeated input stays the same (as timm does)."""
    src = weight.shape[1]
    if src == in_chans:
        return weight
    w = weight.float()
    if in_chans == 1:
        out = w.sum(dim=1, keepdim=True)
    else:
        reps = -(-in_chans // src)
        out = w.repeat(1, reps, *([1] * (w.dim() - 2)))[:, :in_chans] * (src / in_chans)
    return out.to(weight.dtype)


def load_pretrained(model: nn.Module, source: str | Path) -> PretrainedReport:
    """Load weights into ``model`` (a backbone) in place: a known checkpoint name (found or downloaded, hash
    checked) or a local file; returns what was loaded or skipped."""
    from .weights import is_checkpoint_name, resolve_weights

    path = resolve_weights(source)
    state = read_state_dict(path)
    own = model.state_dict()
    report = PretrainedReport(str(path), checkpoint=str(source) if is_checkpoint_name(source) else None)
    report.prefix = _strip_prefix(list(state), set(own))
    renamed = {(k[len(report.prefix):] if report.prefix and k.startswith(report.prefix) else k): v
               for k, v in state.items()}
    conv = first_conv(model)
    conv_key = f"{conv}.weight" if conv is not None else None
    try:
        head_keys = {n for n, _ in _named_in(model, classifier_head(model))}
    except ConfigError:
        head_keys = set()
    accepted: dict[str, Tensor] = {}
    for key, value in renamed.items():
        if key not in own:
            report.unused.append(key)
            continue
        target = own[key]
        if key == conv_key and value.dim() == target.dim() and value.shape[1] != target.shape[1] \
                and value.shape[0] == target.shape[0] and value.shape[2:] == target.shape[2:]:
            value = adapt_channels(value, target.shape[1])
            report.adapted.append(f"{key}: {tuple(renamed[key].shape)} -> {tuple(value.shape)}")
        if value.shape != target.shape:
            what = "classifier head" if key in head_keys else "shape differs"
            report.skipped[key] = f"{what}: file {tuple(value.shape)}, model {tuple(target.shape)}"
            continue
        accepted[key] = value.to(target.dtype)
        report.loaded.append(key)
    if not accepted:
        raise ConfigError(f"model.pretrained: none of the {len(state)} tensors of {path} fit this model "
                          f"(file keys like {sorted(state)[:3]}, model keys like {sorted(own)[:3]}); is it a "
                          "checkpoint of the same architecture?")
    model.load_state_dict(accepted, strict=False)
    report.missing = sorted(k for k in own if k not in accepted)
    log.info("pretrained: %s", report.describe())
    return report


def _named_in(model: nn.Module, sub: nn.Module) -> list[tuple[str, Tensor]]:
    """State-dict entries of ``sub`` under their names in ``model``."""
    prefix = next((n for n, m in model.named_modules() if m is sub), None)
    if prefix is None:
        return []
    return [(f"{prefix}.{k}" if prefix else k, v) for k, v in sub.state_dict().items()]


def head_from_labels(model: nn.Module, source: str | Path, classes: list[str], mapping: dict[str, str],
                     require_all: bool = True) -> dict[str, str]:
    """Set the rows of ``model``'s classifier head (one per class, in ``classes`` order) for the classes that
    ``mapping`` names to the pretrained head's rows for those labels; returns ``{class: label}`` of the rows set.

    The label names come from the checkpoint's class list (AudioSet's for the EfficientAT checkpoints: the
    CSV beside the weights, else the copy shipped with earmark). A class ``mapping`` does not name keeps its new
    row (to be trained), unless ``require_all`` (no training follows: every class needs a label).

    Raises:
        ConfigError: a class without a label (with ``require_all``), a label the checkpoint does not have, or a
            file without a head of that many labels.
    """
    import difflib

    import torch

    from .audioset import audioset_labels
    from .weights import resolve_weights

    missing = [c for c in classes if c not in mapping]
    if missing and require_all:
        raise ConfigError(f"model.head_labels has no label for class(es) {', '.join(missing)} "
                          f"(classes: {', '.join(classes)}); with train.epochs=0 every class needs one, "
                          f"e.g. {{{classes[0]}: 'Speech'}}")
    mapped = [c for c in classes if c in mapping]
    if not mapped:
        log.warning("model.head_labels names none of the classes of this data (%s): the head starts afresh",
                    ", ".join(classes))
        return {}
    path = resolve_weights(source)
    names = audioset_labels(path)
    index = {n.lower(): i for i, n in enumerate(names)}
    rows = {}
    for c in mapped:
        label = mapping[c]
        if label.lower() not in index:
            near = difflib.get_close_matches(label, names, n=3)
            raise ConfigError(f"model.head_labels: {label!r} (class {c}) is not a label of {Path(path).name}"
                              + (f"; did you mean {', '.join(map(repr, near))}?" if near else ""))
        rows[c] = index[label.lower()]
    head = classifier_head(model)
    if not isinstance(head, nn.Linear) or head.out_features != len(classes):
        raise ConfigError(f"model.head_labels needs a linear classifier head with one output per class; "
                          f"{type(model).__name__}'s is {head}")
    state = read_state_dict(path)
    shape = (len(names), head.in_features)
    key = next((k for k, v in state.items() if k.endswith("weight") and tuple(v.shape) == shape), None)
    if key is None:
        raise ConfigError(f"model.head_labels: {path} has no {len(names)}-label classifier layer of input size "
                          f"{head.in_features} to start the head from")
    bias = state.get(key[:-len("weight")] + "bias")
    ours = torch.tensor([classes.index(c) for c in mapped])
    theirs = torch.tensor([rows[c] for c in mapped])
    with torch.no_grad():
        head.weight[ours] = state[key][theirs].to(head.weight.dtype)
        if head.bias is not None:
            head.bias[ours] = bias[theirs].to(head.bias.dtype) if bias is not None else 0.0
    chosen = {c: names[rows[c]] for c in mapped}
    log.info("classifier head started from the pretrained labels %s%s", chosen,
             f"; new rows for {', '.join(missing)}" if missing else "")
    return chosen
