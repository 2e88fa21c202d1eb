"""The typed recipe: every setting of a run, loaded from YAML, with dotted overrides.

A recipe is the complete description of a run. The resolved recipe is saved in the run folder, so the
preprocessing that trained a model always travels with it.

    >>> r = load_recipe("default", ["train.epochs=5", "model.name=resnet34"])
    >>> r.train.epochs
    5
"""
from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import ConfigError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


#: What a run hears of a multichannel file: the mix-down, one channel (``left`` = 0, ``right`` = 1, or an index),
#: or the mid ``(L + R) / 2`` / side ``(L - R) / 2`` of the first two channels.
ChannelSetting = Literal["mix", "left", "right", "mid", "side"] | Annotated[int, Field(ge=0)]


class AudioConfig(_Section):
    """Decoding: every file becomes float32 mono at ``sample_rate`` (``channels`` says which mono)."""

    sample_rate: int = Field(16000, gt=0, description="Rate every file is resampled to (Hz).")
    channels: ChannelSetting = Field(
        "mix", description="What the run hears of a multichannel file: mix (the average of all channels), "
        "left, right, a channel index (0 = left), mid ((L+R)/2) or side ((L-R)/2). A file without that "
        "channel is skipped and reported.",
    )
    max_duration_s: float | None = Field(
        None, gt=0, description="Keep only the first seconds of each file (None: the whole file)."
    )
    min_duration_s: float = Field(
        0.05, ge=0, description="Files shorter than this are skipped and reported (too short to classify)."
    )
    separation: Literal["none", "repet", "hpss", "demucs"] = Field(
        "none", description="Vocal separation before features: keep only the separated vocals."
    )
    separation_options: dict[str, float] = Field(
        default_factory=dict, description="Settings of the separator, e.g. {min_distance_s: 0.5} for repet "
        "(earmark.audio.separate.separation_options lists them).")
    demucs_checkpoint: str | None = Field(None, description="Local Demucs checkpoint (separation=demucs).")


class SegmentConfig(_Section):
    """Divide and conquer: fixed-length windows with a hop."""

    length_s: float = Field(1.0, gt=0, description="Segment length in seconds.")
    hop_s: float = Field(0.5, gt=0, description="Hop between segment starts in seconds.")
    short: Literal["pad", "repeat", "drop"] = Field(
        "pad", description="A file shorter than one segment: zero-pad, loop it, or drop the file."
    )
    tail: Literal["align", "pad", "drop"] = Field(
        "align",
        description="The remainder after the last full hop: a last segment aligned to the file's end, "
        "a zero-padded segment, or nothing.",
    )
    min_tail_s: float = Field(0.0, ge=0, description="With tail=pad, drop a tail shorter than this.")


class FeatureConfig(_Section):
    """The project's filter bank (see :mod:`earmark.features.fbank`) and what is built on it."""

    kind: Literal["logmel", "mfcc", "waveform"] = "logmel"
    n_mels: int = Field(40, gt=0)
    n_fft: int = Field(1024, gt=0)
    win_ms: float = Field(25.0, gt=0)
    hop_ms: float = Field(10.0, gt=0)
    f_min: float = Field(0.0, ge=0)
    f_max: float | None = Field(8000.0, gt=0, description="Upper mel edge (Hz); None: Nyquist.")
    preemphasis: float = Field(0.97, ge=0, lt=1)
    window: Literal["hamming", "hann", "rectangular"] = "hamming"
    log_floor: float = Field(1e-6, gt=0, description="Energies are floored here before the log (log_floor_db=None).")
    log_floor_db: float | None = Field(
        80.0, gt=0, description="Floor each segment's energies at its maximum minus this many dB instead of at "
        "log_floor, so a quieter input floors the same cells (None: the fixed log_floor; unused with log_offset)."
    )
    segment_norm: Literal["none", "mean", "max"] = Field(
        "max", description="Subtract each segment's mean or maximum log energy: the features then do not depend "
        "on the input's level (with log_floor_db, exactly; unused with log_offset)."
    )
    n_mfcc: int = Field(20, gt=0)
    normalize: Literal["band", "global", "none", "fixed"] = Field(
        "band", description="Standardise with statistics of the training data, per mel band or global; fixed: "
        "(x + norm_offset) / norm_scale (the constants a pretrained network was trained with)."
    )
    norm_offset: float = Field(0.0, description="normalize=fixed: added to the log energies.")
    norm_scale: float = Field(1.0, gt=0, description="normalize=fixed: then divided by this.")
    preemphasis_mode: Literal["keep_first", "valid"] = Field(
        "keep_first", description="valid: y[t] = x[t+1] - c x[t], one sample shorter (EfficientAT).")
    center: bool = Field(False, description="Centred frames with reflect padding (torch.stft center=True).")
    power_norm: bool = Field(True, description="Divide the power spectrum by n_fft.")
    mel_filters: Literal["htk", "kaldi"] = Field(
        "htk", description="htk: triangles on the bin frequencies; kaldi: triangles in the mel domain (Kaldi).")
    log_offset: float | None = Field(
        None, gt=0, description="log(x + log_offset) instead of flooring at log_floor (None: the floor).")
    image_size: int | None = Field(
        None, gt=0, description="Resize the spectrogram to a square image (for ImageNet backbones)."
    )
    image_channels: Literal[1, 3] = 1


class ModelConfig(_Section):
    name: str = "cnn"
    dropout: float = Field(0.2, ge=0, lt=1)
    pretrained: str | None = Field(
        None, description="A known checkpoint (mn04_as, ...: found in EARMARK_WEIGHTS or downloaded, sha256 "
        "checked) or a local weights file (safetensors or torch state dict).")
    weights: str | None = Field(
        None, description="A local weights file used as given (wins over pretrained's file).")
    freeze_backbone: bool = False
    freeze_blocks: int = Field(
        0, ge=0, description="With pretrained weights: freeze the first N blocks of the backbone (its "
        "features stages: for EfficientAT the input convolution is block 0).")
    unfreeze_after: int | None = Field(None, ge=0, description="Unfreeze the backbone after N epochs.")
    head_labels: dict[str, str] | None = Field(
        None, description="With pretrained weights: start the new head's rows from the pretrained head's rows for "
        "these labels ({female: Female singing, male: Male singing}); a class not named starts afresh; with "
        "train.epochs=0 (every class named) it is a zero-shot classifier.")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Extra arguments of the model factory.")


class ScheduleConfig(_Section):
    name: Literal["cosine_restarts", "cosine", "step", "onecycle", "plateau", "constant"] = "cosine_restarts"
    warmup_epochs: float = Field(0.0, ge=0)
    t0: int = Field(10, gt=0, description="cosine_restarts: epochs of the first cycle.")
    t_mult: int = Field(1, ge=1, description="cosine_restarts: growth of each cycle.")
    eta_min: float = Field(1e-6, ge=0)
    step_size: int = Field(10, gt=0, description="step: epochs between decays.")
    gamma: float = Field(0.1, gt=0, description="step: decay factor.")
    factor: float = Field(0.5, gt=0, lt=1, description="plateau: decay factor.")
    patience: int = Field(3, ge=0, description="plateau: epochs without improvement before decay.")


class MixupConfig(_Section):
    p: float = Field(0.0, ge=0, le=1)
    alpha: float = Field(0.4, gt=0)


class SpecAugmentConfig(_Section):
    p: float = Field(0.0, ge=0, le=1)
    freq_masks: int = Field(2, ge=0)
    freq_width: int = Field(8, ge=0, description="Largest frequency mask, in bands.")
    time_masks: int = Field(2, ge=0)
    time_width: float = Field(0.1, ge=0, description="Largest time mask, as a fraction of the frames.")


class GainConfig(_Section):
    p: float = Field(0.0, ge=0, le=1)
    min_db: float = -6.0
    max_db: float = 6.0


class NoiseConfig(_Section):
    p: float = Field(0.0, ge=0, le=1)
    min_snr_db: float = 10.0
    max_snr_db: float = 40.0


class ShiftConfig(_Section):
    p: float = Field(0.0, ge=0, le=1)
    max_fraction: float = Field(0.2, ge=0, le=1, description="Largest circular shift, fraction of a segment.")


class WarpConfig(_Section):
    p: float = Field(0.0, ge=0, le=1)
    max_time: float = Field(0.15, ge=0, lt=1, description="Largest time stretch/squeeze (fraction).")
    max_freq: float = Field(0.1, ge=0, lt=1, description="Largest frequency-axis stretch (pitch/vocal tract).")


class AugmentConfig(_Section):
    """Each augmentation has a probability ``p`` (0 disables it) and its parameters."""

    gain: GainConfig = Field(default_factory=GainConfig)
    noise: NoiseConfig = Field(default_factory=NoiseConfig)
    shift: ShiftConfig = Field(default_factory=ShiftConfig)
    warp: WarpConfig = Field(default_factory=WarpConfig)
    specaugment: SpecAugmentConfig = Field(default_factory=SpecAugmentConfig)
    mixup: MixupConfig = Field(default_factory=MixupConfig)


class TrainConfig(_Section):
    epochs: int = Field(30, ge=0, description="Passes over the training data; 0 (only with model.head_labels): "
                        "no training, the pretrained network answers as loaded (zero-shot).")
    batch_size: int = Field(32, gt=0)
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: float = Field(3e-4, gt=0)
    head_lr_mult: float = Field(1.0, gt=0, description="Learning rate of the classifier head, as a multiple of lr.")
    weight_decay: float = Field(1e-5, ge=0)
    momentum: float = Field(0.9, ge=0, description="sgd only.")
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    hard_mining: float = Field(1.0, gt=0, le=1, description="Online hard example mining: keep ratio.")
    class_balance: Literal["none", "weights", "sampler"] = "none"
    grad_clip: float | None = Field(None, gt=0)
    early_stopping: int | None = Field(10, ge=1, description="Patience in epochs (None: off).")
    monitor: Literal["val_loss", "val_acc"] = "val_loss"
    precision: str = Field("32-true", description="Lightning precision: 32-true, bf16-mixed, 16-mixed.")
    accelerator: str = "auto"
    devices: int | str = 1
    strategy: str = "auto"
    num_nodes: int = Field(1, ge=1)
    compile: bool = False
    channels_last: bool = Field(True, description="channels-last memory layout for 2-D convolutions.")
    num_workers: int = Field(0, ge=0)
    loggers: list[Literal["csv", "tensorboard", "mlflow", "swanlab"]] = Field(
        default_factory=lambda: ["csv", "tensorboard"]  # type: ignore[arg-type]
    )
    max_minutes: float | None = Field(None, gt=0, description="Stop training after this wall time.")
    progress: bool = True


class SplitConfig(_Section):
    """How files are split. Every split is group-aware: one group never lands on two sides.

    method: ``auto`` uses a ``fold`` column (cross-validation over it), else a ``split`` column
    (train/val/test), else a seeded stratified holdout of ``test_size``. ``holdout``, ``kfold`` (``folds``
    stratified group folds) and ``logo`` (leave one group out) ignore those columns.
    """

    method: Literal["auto", "holdout", "kfold", "logo", "folds", "split"] = "auto"
    test_size: float = Field(0.3, gt=0, lt=1)
    val_size: float = Field(0.15, ge=0, lt=1, description="Part of the training side held out for validation.")
    folds: int = Field(5, ge=2)
    seed: int | None = Field(None, description="Split seed (None: the recipe's seed).")
    max_folds: int | None = Field(None, ge=1, description="Run only the first N folds.")


class DataConfig(_Section):
    group: str | None = Field(None, description="Manifest column that groups files (speaker, artist, ...).")
    cache_dir: str | None = Field(None, description="Where prepared stores live (default ~/.cache/earmark).")
    workers: int | None = Field(None, ge=1, description="Decoding processes (default: CPU count).")
    max_files_per_class: int | None = Field(None, ge=1, description="Use a seeded subset (smoke tests).")


class EvalConfig(_Section):
    aggregate: Literal["mean", "vote", "sum"] = Field(
        "mean", description="Segment scores to one track answer: mean probability, majority vote, or sum."
    )
    batch_size: int = Field(64, gt=0)


class EnsembleConfig(_Section):
    members: int = Field(1, ge=1)
    kind: Literal["seeds", "kfold"] = "seeds"
    voting: Literal["soft", "hard"] = "soft"
    weighted: bool = Field(False, description="Weight members by their validation score.")
    tta: int = Field(1, ge=1, description="Test-time augmentation: time shifts per segment, averaged.")
    tta_shift: float = Field(0.1, ge=0, lt=1, description="Largest TTA shift, fraction of a segment.")


class DistillConfig(_Section):
    """Knowledge distillation: a student learns from a teacher run's soft labels and the true labels."""

    teacher: str | None = Field(None, description="Teacher run folder (set by `earmark distill`).")
    alpha: float = Field(0.7, ge=0, le=1, description="Weight of the soft-label loss (1 - alpha: true labels).")
    temperature: float = Field(2.0, gt=0, description="Softening of the teacher's probabilities.")


RECIPE_FORMAT = 2
"""Format of the recipes this version writes. A run's config.yaml records it (``recipe_format``); one without
it was written before format 2 and loads with the values of :data:`LEGACY_DEFAULTS` for settings it lacks."""

LEGACY_DEFAULTS: dict[int, dict[str, dict[str, Any]]] = {
    # format 1: the filter bank floored energies at the fixed log_floor and kept the input's level
    1: {"features": {"log_floor_db": None, "segment_norm": "none"}},
}


class Recipe(_Section):
    """A complete run description."""

    recipe_format: int = Field(
        RECIPE_FORMAT, ge=1, le=RECIPE_FORMAT,
        description="Written by earmark; a saved recipe without it is of format 1 (older runs).",
    )
    name: str = "custom"
    description: str = ""
    seed: int = 0
    audio: AudioConfig = Field(default_factory=AudioConfig)
    segment: SegmentConfig = Field(default_factory=SegmentConfig)
    features: FeatureConfig = Field(default_factory=FeatureConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    ensemble: EnsembleConfig = Field(default_factory=EnsembleConfig)
    distill: DistillConfig = Field(default_factory=DistillConfig)
    variants: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Named sets of overrides; each trains as its own run under RUN/variants/<name>, and the run "
                    "predicts with the variant of best validation accuracy.",
    )

    @model_validator(mode="before")
    @classmethod
    def _pretrained_frontend(cls, data: Any) -> Any:
        """``model.weights`` is the file to load; a pretrained EfficientAT model gets its family's front-end."""
        if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
            return data
        data = copy.deepcopy(data)
        model = data["model"]
        if model.get("weights"):
            model["pretrained"] = model["weights"]
        if model.get("pretrained"):
            from .models.efficientat import apply_frontend
            from .models.weights import CHECKPOINTS

            known = CHECKPOINTS.get(str(model["pretrained"]))
            name = model.get("name", ModelConfig.model_fields["name"].default)
            if known is not None and known.model != name and name not in ("probe", "probe_mlp"):  # probes: any mn
                raise ValueError(f"model.pretrained={known.name} holds the weights of {known.model}, not of "
                                 f"model.name={name}; set model.name={known.model}")
            apply_frontend(data)
        return data

    @model_validator(mode="after")
    def _consistent(self) -> "Recipe":
        f_max = self.features.f_max
        if f_max is not None and f_max > self.audio.sample_rate / 2 + 1e-6:
            raise ValueError(
                f"features.f_max={f_max} Hz is above the Nyquist frequency of audio.sample_rate="
                f"{self.audio.sample_rate} Hz; lower it or set features.f_max=null"
            )
        if self.segment.hop_s > self.segment.length_s * 4:
            raise ValueError("segment.hop_s is more than four segment lengths: most audio would be unused")
        if self.audio.separation_options:
            from .audio.separate import separator_kwargs

            try:
                separator_kwargs(self.audio.separation, self.audio.separation_options,
                                 f"audio.separation={self.audio.separation}")
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        if self.model.head_labels and not self.model.pretrained:
            raise ValueError("model.head_labels starts the head from pretrained weights: set model.pretrained "
                             "(e.g. mn04_as) or model.weights")
        if self.model.head_labels and self.model.name in ("probe", "probe_mlp"):
            raise ValueError(f"model.head_labels does not apply to {self.model.name} (its head is fitted); use "
                             "a network (e.g. model.name=mn04)")
        if self.train.epochs == 0 and not self.model.head_labels:
            raise ValueError("train.epochs=0 trains nothing: it is only for a pretrained network whose head is "
                             "started from model.head_labels (zero-shot); set train.epochs >= 1")
        return self

    @property
    def split_seed(self) -> int:
        return self.seed if self.split.seed is None else self.split.seed

    def variant(self, name: str, overrides: list[str] | None = None) -> "Recipe":
        """The recipe of one variant: this recipe (without variants), the variant's overrides, then
        ``overrides`` (the user's ``--set``), so what the user asks for wins over the variant's own choice."""
        if name not in self.variants:
            raise ConfigError(f"recipe {self.name!r} has no variant {name!r}; it has {', '.join(self.variants)}")
        base = self.model_dump(mode="json")
        base.pop("variants")
        base["name"] = f"{self.name}/{name}"
        data = apply_overrides(apply_overrides(base, self.variants[name]), overrides)
        return recipe_from_dict(data, f"{self.name} variant {name}")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


# --------------------------------------------------------------------------------------------- loading


def recipe_names() -> list[str]:
    """Names of the recipes shipped with earmark."""
    folder = resources.files("earmark") / "recipes"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def _recipe_text(name_or_path: str) -> tuple[str, str]:
    path = Path(name_or_path)
    if path.suffix in {".yaml", ".yml"} or path.exists():
        if not path.is_file():
            raise ConfigError(f"recipe file {path} does not exist")
        return path.read_text(), str(path)
    res = resources.files("earmark") / "recipes" / f"{name_or_path}.yaml"
    if not res.is_file():
        raise ConfigError(
            f"unknown recipe {name_or_path!r}; built-in recipes: {', '.join(recipe_names())} "
            "(or pass a path to a YAML file)"
        )
    return res.read_text(), name_or_path


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"train.epochs=5"`` -> (["train", "epochs"], 5). Values are parsed as YAML."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not of the form key=value (e.g. train.epochs=5)")
    key, raw = item.split("=", 1)
    keys = [k for k in key.strip().split(".") if k]
    if not keys:
        raise ConfigError(f"override {item!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() != "" else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {item!r}: value is not valid YAML ({exc})") from None
    return keys, value


def apply_overrides(data: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    data = copy.deepcopy(data)
    for item in overrides or []:
        keys, value = parse_override(item)
        node = data
        for k in keys[:-1]:
            if not isinstance(node.get(k, {}), dict):
                raise ConfigError(f"override {item!r}: {k!r} is a value, not a section")
            node = node.setdefault(k, {})
        node[keys[-1]] = value
    return data


def with_legacy_defaults(data: dict[str, Any]) -> dict[str, Any]:
    """A saved recipe with the settings its format lacked filled in with the values that format used.

    A recipe without ``recipe_format`` is of format 1: a run folder's config.yaml written before format 2.
    Its missing settings take the value its run was trained with, not today's default.
    """
    fmt = data.get("recipe_format", 1)
    if not isinstance(fmt, int) or fmt >= RECIPE_FORMAT:
        return data
    data = copy.deepcopy(data)
    data["recipe_format"] = fmt
    for version in range(fmt, RECIPE_FORMAT):
        for section, values in LEGACY_DEFAULTS.get(version, {}).items():
            node = data.setdefault(section, {})
            if isinstance(node, dict):
                for key, value in values.items():
                    node.setdefault(key, value)
    return data


def recipe_from_dict(data: dict[str, Any], source: str = "recipe") -> Recipe:
    """A recipe from saved settings (a run's config.yaml, a dumped recipe).

    Settings missing from a saved recipe of an older format take that format's values
    (:func:`with_legacy_defaults`); recipes written by hand are loaded with :func:`load_recipe`.
    """
    fmt = data.get("recipe_format")
    if isinstance(fmt, int) and fmt > RECIPE_FORMAT:
        raise ConfigError(f"{source}: recipe_format {fmt} was written by a newer earmark (this one reads formats "
                          f"up to {RECIPE_FORMAT}); upgrade earmark to use it")
    data = with_legacy_defaults(data)
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "(recipe)"
            lines.append(f"  {where}: {err['msg']}")
        raise ConfigError(f"invalid settings in {source}:\n" + "\n".join(lines)) from None
    check_model_features(recipe, source)
    return recipe


def check_model_features(recipe: Recipe, source: str = "recipe") -> None:
    """The model can take the recipe's features (checked before anything is decoded or written).

    Raises:
        ConfigError: an unknown model, or a spectrogram model with ``features.kind=waveform``; the message
            names both settings and a fix. (Raw-waveform models ignore the filter-bank settings.)
    """
    from .models.registry import get_spec  # the registry is a leaf; importing it loads the model families

    spec = get_spec(recipe.model.name)
    if spec.input == "spectrogram" and recipe.features.kind == "waveform":
        raise ConfigError(f"{source}: model.name={spec.name} takes spectrograms, but features.kind=waveform; set "
                          "features.kind to logmel or mfcc, or choose a raw-waveform model (e.g. model.name=raw1d)")


def load_recipe(name_or_path: str = "default", overrides: list[str] | None = None) -> Recipe:
    """Load a built-in recipe by name (or a YAML file) and apply ``key=value`` overrides."""
    text, source = _recipe_text(name_or_path)
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"recipe {source} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"recipe {source} must be a mapping of sections")
    data.setdefault("name", Path(source).stem if source.endswith((".yaml", ".yml")) else source)
    source_path = Path(source)
    if not (source_path.name == "config.yaml" and (source_path.parent / "run.json").is_file()):
        data.setdefault("recipe_format", RECIPE_FORMAT)  # a hand-written recipe gets today's defaults; a run's
        # own config.yaml (beside its run.json) without a format is an older run's and keeps its behaviour
    recipe = recipe_from_dict(apply_overrides(data, overrides), source)
    for name in recipe.variants:  # every variant is checked now, not when its turn to train comes
        recipe.variant(name, overrides)
    return recipe
