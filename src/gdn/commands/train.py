"""`gdn train`: train a model from a YAML config, flags and `--set section.key=value` overrides.

    gdn train --config configs/sthv1/gdn_r50_8f.yaml --data-root data/sthv1 --out runs/gdn8
    gdn train --config ... --out runs/gdn8 --resume auto          # continue after a stop
    torchrun --nproc_per_node 8 -m gdn train --config ...          # one process per GPU

Precedence: the config file (or, without one, the run's saved config.yaml when resuming),
then the flags, then `--set` in order.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from gdn.config import Config, ConfigError

HELP = "train a model (the paper's recipe by default); resumable, torchrun-aware"

log = logging.getLogger(__name__)

# flag -> config key
FLAGS = {
    "model": "model.name",
    "pretrained": "model.pretrained",
    "init_from": "model.init_from",
    "dataset": "data.dataset",
    "data_root": "data.root",
    "frames": "data.frames",
    "size": "data.size",
    "workers": "data.workers",
    "epochs": "train.epochs",
    "batch_size": "train.batch_size",
    "lr": "train.lr",
    "out": "out",
    "device": "device",
}


def add_arguments(p) -> None:
    p.add_argument("--config", help="YAML config file (see configs/); defaults are the paper's recipe")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one config value, parsed as YAML (repeatable), e.g. train.lr=0.01")
    p.add_argument("--model", help="model name (gdn.list_models())")
    p.add_argument("--pretrained", help="ImageNet 2D weights: a state dict path, a URL or 'imagenet'")
    p.add_argument("--init-from", help="fine-tune from a gdn checkpoint or state dict (same architecture)")
    p.add_argument("--reset-head", action="store_true",
                   help="with --init-from: re-initialise the classifier when the class count differs")
    p.add_argument("--dataset", help="ssv1 | ssv2 | list")
    p.add_argument("--data-root", help="dataset folder")
    p.add_argument("--frames", type=int, help="frames per clip (8 or 16 in the paper)")
    p.add_argument("--size", type=int, help="crop size (224 or 112)")
    p.add_argument("--workers", type=int, help="data loading processes per training process")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int, help="per process")
    p.add_argument("--lr", type=float, help="lr at train.base_batch_size (scaled to the effective batch)")
    p.add_argument("--out", help="run folder (config.yaml, checkpoints, metrics, curves)")
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--resume", metavar="auto|PATH",
                   help="'auto': continue from the run folder's last checkpoint (fresh if none); or a checkpoint path")


def build_config(args) -> Config:
    """The run's config from the file / saved run config, the flags and the --set overrides."""
    if args.config:
        cfg = Config.from_yaml(args.config)
    elif args.resume == "auto" and args.out and (Path(args.out) / "config.yaml").is_file():
        cfg = Config.from_yaml(Path(args.out) / "config.yaml")
    elif args.resume and args.resume != "auto":
        from gdn.engine.checkpoint import load_checkpoint

        cfg = Config.from_dict(load_checkpoint(args.resume)["config"], source=args.resume)
    else:
        cfg = Config()
    flags = [f"{key}={_yaml_value(getattr(args, name))}" for name, key in FLAGS.items()
             if getattr(args, name) is not None]
    if args.reset_head:
        flags.append("model.reset_head=true")
    cfg.apply_overrides(flags)
    cfg.apply_overrides(args.overrides)
    return cfg


def _yaml_value(value) -> str:
    # Quote strings so that e.g. a data root named "1e5" or "null" stays a string.
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return str(value)


def run(args) -> int:
    from gdn.data.annotations import AnnotationError
    from gdn.data.datasets import TooManyBadSamples
    from gdn.data.decode import DecodeError
    from gdn.engine.checkpoint import CheckpointError
    from gdn.engine.train import NonFiniteLossError, TrainingInterrupted, train
    from gdn.models.weights import WeightsMismatchError

    try:
        cfg = build_config(args)
    except (ConfigError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        result = train(cfg, resume=args.resume)
    except TrainingInterrupted as e:
        print(f"stopped: {e}", file=sys.stderr)
        return e.exit_code
    except (ConfigError, CheckpointError, AnnotationError, FileNotFoundError, WeightsMismatchError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (NonFiniteLossError, TooManyBadSamples, DecodeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1

    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, one table (the group is gone by now)
        print(format_table(result))
    return 0


def format_table(result: dict) -> str:
    final = result["final"]

    def pct(v):
        return "-" if v is None else f"{v:.2f}"

    rows = [
        ("run", result["run_dir"]),
        ("epochs", str(result["epochs"])),
        ("final train loss", "-" if not final else f"{final['loss']:.4f}"),
        ("final train top-1", pct(final.get("train_top1"))),
        ("final val top-1", pct(final.get("val_top1"))),
        ("final val top-5", pct(final.get("val_top5"))),
        ("best val top-1", pct(result["best_top1"])),
        ("last checkpoint", result["last"]),
        ("best checkpoint", result["best"]),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
