"""Run configuration: typed dataclasses, loaded from one flat YAML file and overridable from the
command line (`--set train.lr=0.01`).

The defaults are the paper's recipe (section 3.2): SGD momentum 0.9, lr 0.02 at batch 48 (scaled
linearly to the effective batch), weight decay 5e-4, 40 epochs, lr x0.1 at epochs 20 and 30,
dropout 0.5. That recipe fine-tunes pretrained weights; a network that starts from random
weights learns with another one (`RECIPES`): `train.recipe: auto` (the default) picks "scratch"
when neither `model.pretrained` nor `model.init_from` is set and "finetune" otherwise, and
`Config.resolve_recipe` fills in the recipe's values for every key the user did not set. The
resolved config is written beside every run (`config.yaml`) and inside every checkpoint, so a
checkpoint alone can rebuild its model.

    cfg = Config.from_yaml("configs/sthv1/gdn_r50_8f.yaml")
    cfg.apply_overrides(["train.lr=0.01", "model.options.r_st=0.5"])
    cfg.save_yaml("runs/x/config.yaml")

Paths. The files of the dataset named in a config (`data.train_list`, `data.val_list`,
`data.classes_file`, in a file or through `--set`) are relative to `data.root`, where the
dataset keeps them; every other path (`data.root`, `data.cache_dir`, `model.pretrained`,
`model.init_from`, `out`) is relative to the current directory, as is every path typed as a
flag (`--data-root`, `--out`, `--list-file`, `--classes-file`, ...). Errors name the path as
resolved.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gdn.errors import GdnError


class ConfigError(GdnError, ValueError):
    """A config file or override that cannot be used; the message names the key and the file."""


@dataclass
class ModelConfig:
    name: str = "gdn_r50"  # any gdn.list_models() name
    pretrained: str | None = None  # ImageNet 2D state dict path / URL / "imagenet", or a TSN/TSM checkpoint
    init_from: str | None = None  # fine-tune: a gdn checkpoint or state dict of the same architecture
    reset_head: bool = False  # with init_from: re-initialise fc when the class count differs
    dropout: float = 0.5
    options: dict = field(default_factory=dict)  # extra create_model overrides, e.g. {"r_st": 0.25}


@dataclass
class DataConfig:
    dataset: str = "ssv1"  # ssv1 | ssv2 | list | folder (ROOT/<class name>/<video or frame folder>)
    root: str = "data/something-something-v1"
    train_split: str = "train"
    val_split: str = "validation"
    # list datasets, relative to root; default <root>/train.txt and val.txt or validation.txt;
    # folder datasets: lines <class>/<video>
    train_list: str | None = None
    val_list: str | None = None
    val_fraction: float = 0.2  # folder datasets without train/val folders or lists: held out per class
    split_seed: int = 0  # the seed of that split (written to the run folder: split-train.txt, split-val.txt)
    classes_file: str | None = None  # relative to root; default: the classes are "0", "1", ...
    frames: int = 8
    size: int = 224
    short_side: int | None = None  # default round(size * 256 / 224)
    sampling: str = "tsn"  # tsn (segments) | dense
    protocol: str = "gdn"  # gdn | tsm | mmaction: whose frame indices and eval pixels (docs/protocols.md)
    flip: str = "label"  # label | naive | none
    label_order: str = "sorted"
    workers: int | None = None  # loader processes; None: the CPUs available (gdn.data.loader.default_workers)
    max_bad_fraction: float = 0.01
    cache_dir: str | None = None  # frame counts of webm files (default: the run folder)
    randaugment: int = 0  # RandAugment ops per training clip, the same for all its frames (0: off)
    randaugment_magnitude: int = 7  # 0-10; n=4, m=7 is SlowFast's and VideoMAE's rand-m7-n4


@dataclass
class TrainConfig:
    recipe: str = "auto"  # auto | scratch | finetune: see RECIPES; the run's config holds the resolved name
    epochs: int = 40
    batch_size: int = 48  # per process
    lr: float = 0.02  # at base_batch_size; scaled linearly to batch_size * world_size * accumulate
    base_batch_size: int = 48
    momentum: float = 0.9
    weight_decay: float = 5e-4  # not on BatchNorm parameters and biases
    schedule: str = "step"  # step | cosine
    lr_steps: list[int] = field(default_factory=lambda: [20, 30])
    lr_gamma: float = 0.1
    warmup_epochs: float = 0.0
    clip_grad: float | None = 20.0  # max global grad norm; None disables clipping
    amp: str = "auto"  # auto (bf16 on CUDA, off on CPU) | bf16 | fp16 | none
    channels_last: bool = True  # CUDA only
    partial_bn: bool = False  # freeze every BatchNorm but the first (TSN)
    freeze_stages: int = -1  # fine-tuning: N >= 0 freezes the stem and the first N stages (BatchNorm too)
    fc_lr_mult: float = 1.0  # the classifier's lr multiple: 5 in the TSM recipe and for a new head
    balance: str = "none"  # none | sampler (class-balanced sampling) | loss (class-weighted loss)
    mixup: float = 0.0  # Beta(alpha, alpha) of Mixup between the clips of a batch (0: off)
    cutmix: float = 0.0  # Beta(alpha, alpha) of CutMix, one box for every frame (0: off; both: one per batch)
    accumulate: int = 1  # micro-batches per optimizer step
    sync_bn: bool = False
    seed: int = 0
    eval_every: int = 1  # validate every N epochs (and always after the last)
    compile: bool = False


# The values a few string fields may take; checked on load so a typo fails before training starts.
CHOICES: dict[str, tuple[str, ...]] = {
    "data.dataset": ("ssv1", "ssv2", "list", "folder"),
    "data.flip": ("label", "naive", "none"),
    "train.recipe": ("auto", "scratch", "finetune"),
    "train.schedule": ("step", "cosine"),
    "train.amp": ("auto", "bf16", "fp16", "none"),
    "train.balance": ("none", "sampler", "loss"),
}

# The training recipes `train.recipe` chooses between; `Config.resolve_recipe` sets these keys
# unless the user set them. Both list the same keys, so that either recipe fully replaces the other.
RECIPES: dict[str, dict[str, Any]] = {
    # The paper's (section 3.2), for a network that starts from pretrained weights: the defaults.
    "finetune": {"train.lr": 0.02, "train.base_batch_size": 48, "train.batch_size": 48, "train.schedule": "step",
                 "train.warmup_epochs": 0.0, "train.weight_decay": 5e-4, "model.dropout": 0.5},
    # From random weights: the demo's recipe, measured on synthetic data and on a folder of real
    # footage against the one above (docs/results.md, "Your own videos: recipes and augmentation").
    "scratch": {"train.lr": 0.05, "train.base_batch_size": 16, "train.batch_size": 16, "train.schedule": "cosine",
                "train.warmup_epochs": 1.0, "train.weight_decay": 1e-4, "model.dropout": 0.2},
}
# A new classifier on a video checkpoint (init_from + reset_head) learns at 5x the backbone's lr,
# as TSM does when it fine-tunes onto another dataset (its `fc_lr5`).
NEW_HEAD_FC_LR_MULT = 5.0
_DEVICE = re.compile(r"^(auto|cpu|cuda|cuda:\d+|mps)$")


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    out: str = "runs/default"  # the run folder: config.yaml, checkpoints, metrics, curves
    device: str = "auto"  # auto | cpu | cuda | cuda:N

    def __post_init__(self) -> None:
        # Keys ("train.lr") given in a file, a dict or an override: a recipe never changes them.
        self._explicit: set[str] = set()

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_dict(cls, d: dict | None, source: str | None = None) -> Config:
        """Build a config from plain data (e.g. a checkpoint's `config` entry).

        Missing keys keep their defaults; unknown keys and values of the wrong type raise
        `ConfigError` naming the key (and `source`, the file it came from).
        """
        cfg = cls()
        cfg._update(d or {}, source=source)
        return cfg

    @classmethod
    def from_yaml(cls, path: str | Path) -> Config:
        """Load a YAML config file; errors name the file and line."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found; pass an existing YAML file to --config")
        text = path.read_text()
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
            problem = getattr(e, "problem", None) or str(e)
            raise ConfigError(f"{where}: malformed YAML ({problem}); fix the file") from None
        if data is not None and not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of sections (model, data, train, out, device)")
        cfg = cls()
        cfg._update(data or {}, source=str(path), lines=_key_lines(text))
        return cfg

    def apply_overrides(self, overrides: list[str] | tuple[str, ...], source: str | None = None) -> Config:
        """Apply `section.key=value` strings (values parsed as YAML: `20`, `0.1`, `[10, 20]`, `null`).

        `model.options.<name>=value` sets one entry of the free-form options dict. Errors name
        `source` (e.g. the command-line flag the value came from) or else the override itself.
        Returns self for chaining.
        """
        for item in overrides:
            key, sep, raw = item.partition("=")
            key = key.strip()
            if not sep or not key:
                raise ConfigError(f"override '{item}': expected section.key=value, e.g. train.lr=0.01")
            try:
                value = yaml.safe_load(raw) if raw.strip() else None
            except yaml.YAMLError:
                raise ConfigError(f"override '{item}': value is not valid YAML") from None
            # Build the nested dict {"train": {"lr": 0.01}} and merge it like a file.
            nested: Any = value
            for part in reversed(key.split(".")):
                nested = {part: nested}
            self._update(nested, source=source or f"override '{item}'")
        return self

    # ---------------------------------------------------------------- output
    def to_dict(self) -> dict:
        """Plain data (dicts, lists, numbers, strings): safe for YAML and `torch.load(weights_only=True)`.

        The recipe is resolved in what is returned (`resolve_recipe`, on a copy): every key a
        saved config holds counts as set when it is read back, so it must hold the values this
        config runs with, not the defaults the recipe would have replaced.
        """
        resolved = copy.deepcopy(self)
        resolved.resolve_recipe()
        return dataclasses.asdict(resolved)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save_yaml(self, path: str | Path) -> None:
        Path(path).write_text(self.to_yaml())

    # ---------------------------------------------------------------- the recipe
    def is_explicit(self, key: str) -> bool:
        """Whether the user chose `key` ("section.key"): set in a file, dict or override, or
        assigned in code to something other than its default."""
        section, name = key.split(".")
        default = getattr(type(getattr(self, section))(), name)
        return key in self._explicit or getattr(getattr(self, section), name) != default

    def resolve_recipe(self) -> dict[str, Any]:
        """Resolve `train.recipe` and apply it: "auto" becomes "finetune" when the model starts
        from weights (`model.pretrained` or `model.init_from`) and "scratch" otherwise; the
        recipe's values (`RECIPES`) replace those of every key the user did not set. Idempotent.

        Returns the keys the recipe set, with their values (for the log).
        """
        m, t = self.model, self.train
        name = t.recipe if t.recipe != "auto" else ("finetune" if m.pretrained or m.init_from else "scratch")
        values = dict(RECIPES[name])
        if name == "finetune" and m.init_from and m.reset_head:
            values["train.fc_lr_mult"] = NEW_HEAD_FC_LR_MULT
        applied = {}
        for key, value in values.items():
            if not self.is_explicit(key):
                section, field_name = key.split(".")
                setattr(getattr(self, section), field_name, value)
                applied[key] = value
        t.recipe = name
        return applied

    # ---------------------------------------------------------------- derived values
    def effective_batch_size(self, world_size: int = 1) -> int:
        return self.train.batch_size * world_size * self.train.accumulate

    def scaled_lr(self, world_size: int = 1) -> float:
        """The linear scaling rule: lr grows with the effective batch (Goyal et al. 2017)."""
        return self.train.lr * self.effective_batch_size(world_size) / self.train.base_batch_size

    # ---------------------------------------------------------------- internals
    def _update(self, d: dict, source: str | None, lines: dict[str, int] | None = None) -> None:
        # All or nothing: a rejected update leaves the config as it was.
        before = copy.deepcopy(self)
        try:
            self._update_unchecked(d, source, lines)
        except ConfigError:
            for f in dataclasses.fields(self):
                setattr(self, f.name, getattr(before, f.name))
            self._explicit = before._explicit
            raise

    def _update_unchecked(self, d: dict, source: str | None, lines: dict[str, int] | None) -> None:
        where = source or "config"
        lines = lines or {}
        if not isinstance(d, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(d).__name__}")
        for key, value in d.items():
            _check_key(self, key, prefix="", where=where, lines=lines)
            current = getattr(self, key)
            if dataclasses.is_dataclass(current):
                if value is None:  # an empty section in YAML
                    continue
                if not isinstance(value, dict):
                    raise ConfigError(f"{_loc(where, lines, key)}: '{key}' must be a mapping of its keys")
                for sub, subvalue in value.items():
                    name = f"{key}.{sub}"
                    _check_key(current, sub, prefix=f"{key}.", where=where, lines=lines)
                    old = getattr(current, sub)
                    if isinstance(old, dict) and sub == "options":
                        subvalue = _merge_options(old, subvalue, _loc(where, lines, name), name)
                    setattr(current, sub, _coerce(subvalue, _field_types(type(current))[sub], name, _loc(where, lines, name)))
                    self._explicit.add(name)
            else:
                setattr(self, key, _coerce(value, _field_types(Config)[key], key, _loc(where, lines, key)))
        self._validate(where)

    def _validate(self, where: str) -> None:
        from gdn.data.sampling import PROTOCOLS, SAMPLINGS

        for name, choices in {**CHOICES, "data.sampling": SAMPLINGS, "data.protocol": PROTOCOLS}.items():
            section, key = name.split(".")
            value = getattr(getattr(self, section), key)
            if value not in choices:
                raise ConfigError(f"{where}: {name}='{value}' is not one of: {', '.join(choices)}")
        if not _DEVICE.match(self.device):
            raise ConfigError(f"{where}: device='{self.device}' must be auto, cpu, cuda or cuda:N")
        from gdn.models import list_models

        if self.model.name not in list_models():
            close = difflib.get_close_matches(self.model.name, list_models(), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ConfigError(
                f"{where}: model.name='{self.model.name}' is not a known model{hint}; "
                f"choose one of: {', '.join(list_models())}"
            )
        positive = {
            "train.epochs": self.train.epochs, "train.batch_size": self.train.batch_size,
            "train.base_batch_size": self.train.base_batch_size, "train.accumulate": self.train.accumulate,
            "train.eval_every": self.train.eval_every, "data.frames": self.data.frames, "data.size": self.data.size,
        }
        for name, value in positive.items():
            if value < 1:
                raise ConfigError(f"{where}: {name}={value} must be at least 1")
        if self.model.pretrained and self.model.init_from:
            raise ConfigError(
                f"{where}: model.pretrained and model.init_from are both set; choose one "
                "(ImageNet 2D weights, or a video checkpoint to fine-tune)"
            )
        if self.data.workers is not None and self.data.workers < 0:
            raise ConfigError(f"{where}: data.workers={self.data.workers} must be 0 or more")
        if not 0 < self.data.val_fraction < 1:
            raise ConfigError(f"{where}: data.val_fraction={self.data.val_fraction} must be between 0 and 1")
        if not 0 <= self.data.randaugment_magnitude <= 10 or self.data.randaugment < 0:
            raise ConfigError(f"{where}: data.randaugment={self.data.randaugment} must be 0 or more and "
                              f"data.randaugment_magnitude={self.data.randaugment_magnitude} within 0-10")
        if self.train.freeze_stages < -1:
            raise ConfigError(f"{where}: train.freeze_stages={self.train.freeze_stages} must be -1 (nothing frozen) "
                              "or N >= 0 (the stem and the first N stages)")
        if self.train.mixup < 0 or self.train.cutmix < 0:
            raise ConfigError(f"{where}: train.mixup and train.cutmix must be 0 (off) or a Beta alpha > 0")


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _check_key(obj: Any, key: Any, prefix: str, where: str, lines: dict[str, int]) -> None:
    valid = [f.name for f in dataclasses.fields(obj)]
    if key not in valid:
        close = difflib.get_close_matches(str(key), valid, n=1)
        hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
        section = f"'{prefix[:-1]}'" if prefix else "the top level"
        raise ConfigError(
            f"{_loc(where, lines, prefix + str(key))}: unknown key '{prefix}{key}'{hint}; "
            f"valid keys in {section}: {', '.join(valid)}"
        )


def _merge_options(old: dict, new: Any, where: str, name: str) -> dict:
    if new is None:
        return {}
    if not isinstance(new, dict):
        raise ConfigError(f"{where}: {name} must be a mapping, e.g. {{r_st: 0.25}}")
    return {**old, **new}


def _coerce(value: Any, tp: Any, name: str, where: str) -> Any:
    """Check (and where lossless, convert) a value to a field's annotated type."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(value, inner, name, where)
    if origin is list:
        (inner,) = typing.get_args(tp)
        items = value if isinstance(value, (list, tuple)) else [value]
        return [_coerce(v, inner, f"{name}[{i}]", where) for i, v in enumerate(items)]
    if tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: {name} must be a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # PyYAML reads "5e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
    else:
        return value
    raise ConfigError(f"{where}: {name} must be {getattr(tp, '__name__', tp)}, got {value!r}")


def _loc(where: str, lines: dict[str, int], key: str) -> str:
    line = lines.get(key)
    return f"{where}:{line}" if line else where


def _key_lines(text: str) -> dict[str, int]:
    """Map 'section.key' to its (1-based) line in a YAML text, for error messages."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return {}
    lines: dict[str, int] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                name = f"{prefix}{k.value}"
                lines[name] = k.start_mark.line + 1
                walk(v, name + ".")

    walk(root, "")
    return lines
