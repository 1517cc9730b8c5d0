"""`gdn check-data`: read a dataset's annotations, open every video or frame folder it names,
print counts per split and per class and every bad entry.

Exit code 0 only when clean: 1 when an entry is bad or nothing could be read (the reason is
the last line), 2 for a usage error (a --root, --list-file or --classes-file that does not
exist). Paths typed here are relative to the current directory; the video paths inside a
list file are relative to --root.
"""

from __future__ import annotations

import argparse
import logging
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tqdm import tqdm

from gdn.data.annotations import DATASETS, AnnotationError, Annotations, Entry, folder_has_splits, read_annotations
from gdn.data.decode import (DecodeError, FrameCountCache, count_frames_cached, frame_number_gaps,
                             list_frame_files, read_frames)
from gdn.errors import GdnError, UsageError

HELP = "check a dataset: annotations, every video/frame folder; lists bad entries (exit 1 if any)"
log = logging.getLogger(__name__)


class NothingChecked(GdnError):
    """No split of the dataset could be read: a failure, never "clean"."""

    exit_code = 1


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, choices=DATASETS)
    p.add_argument("--root", required=True, type=Path, help="folder with annotations and videos")
    p.add_argument("--split", action="append", choices=["train", "val", "validation", "test", "all"],
                   help="split to check (repeatable; default: every split whose file exists; "
                        "folder datasets without train/val folders: all)")
    p.add_argument("--label-order", default="sorted", choices=["sorted", "csv"], help="ssv1 only")
    p.add_argument("--list-file", help="list dataset: the list file (default <root>/<split>.txt; "
                   "the validation split: val.txt or validation.txt); folder dataset: a list of "
                   "<class>/<video> lines")
    p.add_argument("--classes-file", help="list dataset: class names, one a line")
    p.add_argument("--frames-dir", help="ssv2: folder of extracted <id>/ frame folders")
    p.add_argument("--cache-dir", type=Path,
                   help="save video frame counts here (build_dataset(cache_dir=...) reuses them)")
    p.add_argument("--decode-all", action="store_true",
                   help="decode every frame (slow); default: count frames, decode first and last")
    p.add_argument("--workers", type=int, default=2, help="parallel file checks (threads)")
    p.add_argument("--max-bad", type=int, default=50, help="bad entries to print in full")


def table(headers: list[str], rows: list[list]) -> str:
    """A plain text table, numbers right-aligned."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    numeric = [all(isinstance(r[i], (int, float)) for r in rows) for i in range(len(headers))]
    lines = []
    for k, r in enumerate(cells):
        lines.append("  ".join(c.rjust(w) if numeric[i] else c.ljust(w)
                               for i, (c, w) in enumerate(zip(r, widths))).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def check_entry(entry: Entry, counts: dict | FrameCountCache, decode_all: bool = False) -> str | None:
    """None when the entry's frames can be read, else the reason (missing, empty, undecodable,
    no frames, a video that ends before its header says...) as DecodeError words it."""
    try:
        if entry.frames or entry.path.is_dir():
            files = list_frame_files(entry.path)
            gaps = frame_number_gaps(entry.path)
            if gaps:
                raise DecodeError(f"{entry.path}: {gaps}; re-extract the frames")
            for f in files:  # empty JPEGs are the common damage of an interrupted extraction
                if f.stat().st_size == 0:
                    raise DecodeError(f"{f}: frame file is empty (0 bytes); re-extract the frames")
            read_frames(entry.path, range(len(files)) if decode_all else [0, len(files) - 1])
        else:
            n = count_frames_cached(entry.path, counts, strict=True)
            read_frames(entry.path, [n - 1] if decode_all else [0])
    except (DecodeError, OSError) as e:
        return str(e)
    return None


def _splits(args) -> list[str]:
    if args.split:
        return args.split
    if args.dataset == "list":
        return ["train", "val", "test"] if args.list_file is None else ["train"]
    if args.dataset == "folder" and args.list_file is None and not folder_has_splits(args.root):
        return ["all"]
    return ["train", "validation", "test"]


def _typed_file(value: str | None, flag: str) -> Path | None:
    """A file named on the command line, relative to the current directory; UsageError if missing."""
    if value is None:
        return None
    path = Path(value).absolute()
    if not path.is_file():
        raise UsageError(f"{flag} {value}: {path} not found (paths typed on the command line are "
                         "relative to the current directory)")
    return path


def run(args: argparse.Namespace) -> int:
    if not args.root.is_dir():
        raise UsageError(f"--root {args.root}: {args.root.absolute()} is not a folder; pass the folder "
                         "that holds the annotation files and the videos")
    list_file = _typed_file(args.list_file, "--list-file")
    classes_file = _typed_file(args.classes_file, "--classes-file")
    anns: list[Annotations] = []
    unread: list[tuple[str, str]] = []  # (split, why it could not be read)
    bad: list[tuple[str, str, str]] = []  # (split, where, reason)
    for split in _splits(args):
        try:
            ann = read_annotations(args.dataset, args.root, split, label_order=args.label_order,
                                   frames_dir=args.frames_dir, list_file=list_file,
                                   classes_file=classes_file)
        except AnnotationError as e:
            unread.append((split, str(e)))
            continue
        if not ann.entries and not ann.problems:
            unread.append((split, f"{ann.file.absolute()}: no videos listed"))
            continue
        anns.append(ann)
        bad += [(ann.split, f"{p.file.name}, {p.where}", p.reason) for p in ann.problems]
    if not anns:
        reasons = list(dict.fromkeys(why for _, why in unread))
        if len(reasons) > 1:  # one per split: list them, the error names the first
            for split, why in unread:
                print(f"[{split}] {why}")
        more = f" (the first of {len(reasons)} reasons listed above)" if len(reasons) > 1 else ""
        raise NothingChecked(f"nothing could be read under {args.root} as dataset {args.dataset}: "
                             f"{reasons[0]}{more}")
    for split, why in unread:
        if args.split or list_file:  # asked for: a failure
            bad.append((split, "-", why))
        else:
            log.info("no %s split: %s", split, why)

    counts: dict | FrameCountCache = {}
    if args.cache_dir is not None:
        counts = FrameCountCache(args.cache_dir / f"frame-counts-{args.dataset}.json")
    rows = []
    for ann in anns:
        with ThreadPoolExecutor(max(1, args.workers)) as pool:
            results = list(tqdm(pool.map(lambda e: check_entry(e, counts, args.decode_all), ann.entries),
                                total=len(ann.entries), desc=f"checking {ann.split}", unit="video"))
        n_bad = 0
        for entry, reason in zip(ann.entries, results):
            if reason is not None:
                n_bad += 1
                where = ann.where(entry) if ann.file.is_dir() else f"{ann.where(entry)} (id {entry.id})"
                bad.append((ann.split, where, reason))
        labelled = sum(e.label >= 0 for e in ann.entries)
        rows.append([ann.split, str(ann.file), len(ann.entries), labelled, len(ann.entries) - n_bad,
                     n_bad + len(ann.problems)])
    if isinstance(counts, FrameCountCache):
        counts.save()

    print(table(["split", "file", "videos", "labelled", "readable", "bad"], rows))
    classes = anns[0].classes
    per = [Counter(e.label for e in ann.entries) for ann in anns]
    print()
    print(table(["label", "class"] + [a.split for a in anns],
                [[i, name] + [c[i] for c in per] for i, name in enumerate(classes)]))
    if bad:
        print(f"\n{len(bad)} bad entr{'y' if len(bad) == 1 else 'ies'}:")
        for split, where, reason in bad[: args.max_bad]:
            print(f"  [{split}] {where}: {reason}")
        if len(bad) > args.max_bad:
            print(f"  ... and {len(bad) - args.max_bad} more (raise --max-bad to see them)")
        return 1
    print("\nclean: every entry has a known label and readable frames")
    return 0
