"""`gdn train`: train a model from a YAML config, flags and `--set section.key=value` overrides.

    gdn train --config configs/sthv1/gdn_r50_8f.yaml --data-root data/sthv1 --out runs/gdn8
    gdn train --dataset folder --data-root my_videos --model gdn_tiny --out runs/mine   # your own videos
    gdn train --config ... --out runs/gdn8 --resume auto          # continue after a stop
    torchrun --nproc_per_node 8 -m gdn train --config ...          # one process per GPU

Precedence: the config file (or, without one, the run's saved config.yaml when resuming),
then the flags, then `--set` in order.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from gdn.config import Config

HELP = "train a model (from scratch or fine-tuning: the recipe follows the weights); resumable, torchrun-aware"

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
    "recipe": "train.recipe",
    "freeze_stages": "train.freeze_stages",
    "balance": "train.balance",
    "epochs": "train.epochs",
    "batch_size": "train.batch_size",
    "lr": "train.lr",
    "out": "out",
    "device": "device",
}


def add_arguments(p) -> None:
    p.add_argument("--config", help="YAML config file (see configs/); defaults are the paper's recipe")
    p.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="SECTION.KEY=VALUE",
                   help="override config values, parsed as YAML, e.g. --set train.lr=0.05 train.epochs=40")
    p.add_argument("--model", help="model name (gdn.list_models())")
    p.add_argument("--pretrained", help="2D weights to start from: ImageNet (a state dict path, a URL or 'imagenet') "
                                        "or a TSN/TSM checkpoint (gdn convert's, the TSM repository's, MMAction2's)")
    p.add_argument("--init-from", help="fine-tune from a gdn checkpoint or state dict (same architecture)")
    p.add_argument("--reset-head", action="store_true",
                   help="with --init-from: re-initialise the classifier when the class count differs")
    p.add_argument("--recipe", help="auto (default: scratch without weights, finetune with them) | scratch | finetune")
    p.add_argument("--freeze-stages", type=int, metavar="N",
                   help="fine-tuning: freeze the stem and the first N stages, their BatchNorm statistics too")
    p.add_argument("--balance", help="none | sampler (class-balanced sampling) | loss (class-weighted loss)")
    p.add_argument("--dataset", help="ssv1 | ssv2 | list | folder (ROOT/<class name>/<videos>)")
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
    p.add_argument("--overwrite", action="store_true",
                   help="start a fresh run in a --out folder that holds an earlier run (its checkpoints and "
                        "metrics are deleted); without it such a folder is refused")


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
    for name, key in FLAGS.items():
        value = getattr(args, name)
        if value is not None:  # errors name the flag as typed: "--model gdn_r5"
            cfg.apply_overrides([f"{key}={_yaml_value(value)}"], source=f"--{name.replace('_', '-')} {value}")
    if args.reset_head:
        cfg.apply_overrides(["model.reset_head=true"], source="--reset-head")
    cfg.apply_overrides(args.overrides)
    return cfg


def _yaml_value(value) -> str:
    # Quote strings so that e.g. a data root named "1e5" or "null" stays a string.
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return str(value)


def run(args) -> int:
    from gdn.engine.train import train

    cfg = build_config(args)
    result = train(cfg, resume=args.resume, overwrite=args.overwrite)
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
