"""Annotation readers: Something-Something V1 and V2 as distributed, generic list files, and a
folder of class folders.

Each reader returns :class:`Annotations`: the class names (index = label), one :class:`Entry` per
video, and every problem found (unknown class, label out of range, duplicate id, malformed line)
with the file and line (for JSON: the entry index). :meth:`Annotations.raise_for_problems` turns
problems into one :class:`AnnotationError`; datasets call it at build time so a bad label can
never reach the GPU as a device-side assert. ``gdn check-data`` lists them all instead.

Layouts (see docs/reference: something-something.md):

- ``ssv1``: ``20bn-something-something-v1/<id>/00001.jpg ...``, ``something-something-v1-labels.csv``
  (174 names, one a line), ``-train.csv`` / ``-validation.csv`` (``<id>;<class name>``),
  ``-test.csv`` (``<id>``). Label order ``"sorted"`` (alphabetical, TSM/GST) or ``"csv"``
  (file order, MMAction2).
- ``ssv2``: ``20bn-something-something-v2/<id>.webm`` (or ``<id>/`` frame folders),
  ``something-something-v2-labels.json`` (``{template: "index"}``), ``-train.json`` /
  ``-validation.json`` (``[{"id", "template", ...}]``; class = template without ``[`` ``]``),
  ``-test.json`` (``[{"id"}]``).
- ``list``: TSM/MMAction2 lists, ``<dir> <num_frames> <label>`` (frame folders) or
  ``<path> <label>`` (videos); a ``<path>`` alone is unlabelled, which only a test split may be.
  Optional class-names file, one name a line. ``<root>/<split>.txt`` by default, the validation
  split as ``val.txt`` or ``validation.txt``.
- ``folder``: your own videos, ``ROOT/<class name>/<video file or frame folder>`` (the Kinetics
  and UCF101 layout; any container PyAV reads, frame folders of JPEGs). Class names are the
  folder names, sorted. The split comes from ``ROOT/train/<class>/...`` and ``ROOT/val/<class>/...``
  (or ``validation``) when both exist; or from list files of ``<class>/<video>`` lines relative
  to the root; or, for a plain ``ROOT/<class>/`` tree read as split ``"all"``, from
  :func:`split_by_class`, a seeded stratified fraction that `gdn train` writes to its run folder.
  Hidden entries (``.name``) and files directly under a split folder are ignored; a file in a
  class folder that is not a video, and an empty class folder, are problems.

Paths: the readers take the data root as given (a caller resolves a path typed on the command
line against the current directory); the list file, the class-names file and the video paths
inside a list are relative to the root unless absolute. Errors name the path as resolved
(absolute).
"""

from __future__ import annotations

import json
import logging
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gdn.data.decode import VIDEO_SUFFIXES
from gdn.errors import GdnError

log = logging.getLogger(__name__)

__all__ = ["AnnotationError", "Annotations", "Entry", "Problem", "read_annotations",
           "read_ssv1", "read_ssv2", "read_list", "read_folder", "folder_has_splits", "split_by_class",
           "write_split_list", "normalize_split", "class_difference", "DATASETS",
           "SSV1_FRAMES", "SSV1_LABELS", "SSV1_SPLIT", "SSV2_VIDEOS", "SSV2_LABELS", "SSV2_SPLIT"]

DATASETS = ("ssv1", "ssv2", "list", "folder")
# The official layouts, the one place they are spelled (synthetic.py writes them, the readers
# below read them): under the root, the folder of frame folders or videos, the class names,
# and one annotation file per split (`{split}`: train, validation, test).
SSV1_FRAMES = "20bn-something-something-v1"
SSV1_LABELS = "something-something-v1-labels.csv"
SSV1_SPLIT = "something-something-v1-{split}.csv"
SSV2_VIDEOS = "20bn-something-something-v2"
SSV2_LABELS = "something-something-v2-labels.json"
SSV2_SPLIT = "something-something-v2-{split}.json"
_SPLITS = {"train": "train", "val": "validation", "validation": "validation", "test": "test"}


class AnnotationError(GdnError, ValueError):
    """An annotation file cannot be used as is; the message names the file, the line and what
    to do."""


@dataclass(frozen=True)
class Entry:
    """One video: its id, where its frames are, its label (-1: unknown) and where it was read."""

    id: str
    path: Path  # a video file or a folder of JPEG frames
    label: int
    line: int  # 1-based line, or 0-based entry index for JSON files
    frames: bool  # True: `path` is a frame folder; False: a video file (or a folder, see dataset)


@dataclass(frozen=True)
class Problem:
    file: Path
    where: str  # "line 12" / "entry 11"
    reason: str

    def __str__(self) -> str:
        return f"{self.file}, {self.where}: {self.reason}"


@dataclass
class Annotations:
    name: str
    split: str
    file: Path
    classes: list[str]
    entries: list[Entry]
    problems: list[Problem] = field(default_factory=list)

    def where(self, entry: Entry) -> str:
        """Where `entry` was read: ``"<file name>, line N"`` (``entry N`` for JSON files), or
        ``"<root name>/<class>/<video>"`` for a folder dataset read from its class folders."""
        if self.file.is_dir():
            return f"{self.file.name}/{entry.id}"
        return f"{self.file.name}, {'entry' if self.file.suffix == '.json' else 'line'} {entry.line}"

    def raise_for_problems(self, show: int = 5) -> None:
        """Raise :class:`AnnotationError` listing the first ``show`` problems, if any."""
        if not self.problems:
            return
        lines = [str(p) for p in self.problems[:show]]
        more = len(self.problems) - show
        if more > 0:
            lines.append(f"... and {more} more")
        raise AnnotationError(
            f"{len(self.problems)} problem(s) in the {self.name} {self.split} annotations:\n  "
            + "\n  ".join(lines)
            + "\nFix or remove these entries"
            + (" (class names and label files must come from the same release)" if self.name in ("ssv1", "ssv2") else "")
            + f"; `gdn check-data --dataset {self.name} --root ...` lists them all."
        )


def class_difference(ours: list[str], theirs: list[str]) -> str:
    """The first way two class lists differ, for messages: "4 vs 5 classes" or
    "class 0 is 'A' vs 'B'" (the same names in another order show here too)."""
    if len(ours) != len(theirs):
        return f"{len(ours)} vs {len(theirs)} classes"
    i = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), None)
    return "no difference" if i is None else f"class {i} is {ours[i]!r} vs {theirs[i]!r}"


def normalize_split(split: str) -> str:
    """``train`` / ``val`` / ``validation`` / ``test`` -> the official file-name part."""
    try:
        return _SPLITS[split]
    except KeyError:
        raise ValueError(f"unknown split {split!r}: use train, val (validation) or test") from None


def _require(path: Path, what: str, hint: str) -> Path:
    if not path.is_file():
        raise AnnotationError(f"{path.absolute()}: {what} not found; {hint}")
    return path


def _root_hint(root: Path, name: str) -> str:
    """What to check when an annotation file of dataset `name` is not under `root`."""
    if not root.is_dir():
        return f"the data root {root.absolute()} is not a folder"
    other, labels = ("ssv2", SSV2_LABELS) if name == "ssv1" else ("ssv1", SSV1_LABELS)
    if (root / labels).is_file():
        return f"this data root holds {other} annotations ({labels}): use dataset {other}"
    return "check the data root (the folder that holds the annotation files and the video folder)"


def _under(root: Path, path: str | Path) -> Path:
    path = Path(path)
    return path if path.is_absolute() else root / path


def _drop_duplicates(entries: list[Entry], file: Path, problems: list[Problem],
                     unit: str) -> list[Entry]:
    """The entries with the first of each id; each later one is a problem."""
    first: dict[str, int] = {}
    kept = []
    for e in entries:
        if e.id in first:
            problems.append(Problem(file, f"{unit} {e.line}",
                                    f"duplicate id {e.id!r} (first at {unit} {first[e.id]}); "
                                    "remove one of them"))
        else:
            first[e.id] = e.line
            kept.append(e)
    return kept


def _read_lines(path: Path) -> list[tuple[int, str]]:
    with open(path, encoding="utf-8") as f:
        return [(i, line.strip()) for i, line in enumerate(f, 1) if line.strip()]


def read_ssv1(root: str | Path, split: str, label_order: str = "sorted") -> Annotations:
    """Something-Something V1 (frame folders, CSV annotations)."""
    root, split = Path(root), normalize_split(split)
    if label_order not in ("sorted", "csv"):
        raise ValueError(f"unknown label_order {label_order!r}: use 'sorted' (TSM/GST) or 'csv' "
                         "(MMAction2)")
    labels_file = _require(root / SSV1_LABELS, "SSv1 label file", _root_hint(root, "ssv1"))
    problems: list[Problem] = []
    names = [name for _, name in _read_lines(labels_file)]
    classes = sorted(names) if label_order == "sorted" else names
    index = {name: i for i, name in enumerate(classes)}
    if len(index) != len(names):
        seen: set[str] = set()
        for ln, name in _read_lines(labels_file):
            if name in seen:
                problems.append(Problem(labels_file, f"line {ln}", f"class {name!r} listed twice"))
            seen.add(name)

    file = _require(root / SSV1_SPLIT.format(split=split), f"SSv1 {split} list", _root_hint(root, "ssv1"))
    entries: list[Entry] = []
    for ln, line in _read_lines(file):
        vid, sep, name = line.partition(";")
        vid, name = vid.strip(), name.strip()
        if split == "test" and not name:
            label = -1
        elif not sep or not vid or not name:
            problems.append(Problem(file, f"line {ln}", f"expected '<id>;<class name>', got {line!r}"))
            continue
        elif name not in index:
            problems.append(Problem(file, f"line {ln}", f"unknown class {name!r} (not in "
                                    f"{labels_file.name})"))
            continue
        else:
            label = index[name]
        entries.append(Entry(vid, root / SSV1_FRAMES / vid, label, ln, frames=True))
    entries = _drop_duplicates(entries, file, problems, "line")
    return Annotations("ssv1", split, file, classes, entries, problems)


def _load_json(path: Path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise AnnotationError(f"{path}: not valid JSON ({e}); re-download or re-extract it") from e


def read_ssv2(root: str | Path, split: str, frames_dir: str | Path | None = None) -> Annotations:
    """Something-Something V2 (WebM videos or extracted frame folders, JSON annotations).

    Frames are read from ``<frames_dir>/<id>/`` when ``frames_dir`` is given, or from
    ``20bn-something-something-v2/<id>/`` when that folder exists for the first video;
    otherwise from ``20bn-something-something-v2/<id>.webm``.
    """
    root, split = Path(root), normalize_split(split)
    problems: list[Problem] = []
    labels_file = _require(root / SSV2_LABELS, "SSv2 label file", _root_hint(root, "ssv2"))
    raw = _load_json(labels_file)
    if not isinstance(raw, dict):
        raise AnnotationError(f"{labels_file}: expected an object {{template: index}}")
    by_index: dict[int, str] = {}
    for i, (template, value) in enumerate(raw.items()):
        try:
            idx = int(value)
        except (TypeError, ValueError):
            problems.append(Problem(labels_file, f"entry {i}", f"index {value!r} is not an integer"))
            continue
        if idx in by_index:
            problems.append(Problem(labels_file, f"entry {i}", f"index {idx} used twice"))
        by_index[idx] = template
    if by_index and sorted(by_index) != list(range(len(by_index))):
        problems.append(Problem(labels_file, "all entries",
                                f"indices are not 0..{len(by_index) - 1} without gaps"))
    classes = [by_index[i] for i in sorted(by_index)]
    index = {name: i for i, name in enumerate(classes)}

    file = _require(root / SSV2_SPLIT.format(split=split), f"SSv2 {split} list", _root_hint(root, "ssv2"))
    items = _load_json(file)
    if not isinstance(items, list):
        raise AnnotationError(f"{file}: expected a list of {{\"id\": ...}} objects")
    videos = root / SSV2_VIDEOS
    if frames_dir is not None:
        folder, frames = Path(frames_dir), True
    else:
        first = next((it.get("id") for it in items if isinstance(it, dict) and "id" in it), None)
        folder, frames = videos, first is not None and (videos / str(first)).is_dir()
    if frames:
        log.info("SSv2 %s: reading frame folders from %s", split, folder)

    entries: list[Entry] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or "id" not in item:
            problems.append(Problem(file, f"entry {i}", f"expected an object with an 'id', got {item!r}"))
            continue
        vid = str(item["id"])
        template = item.get("template")
        if template is None:
            if split != "test":
                problems.append(Problem(file, f"entry {i}", f"video {vid} has no 'template'"))
                continue
            label = -1
        else:
            name = template.replace("[", "").replace("]", "")
            if name not in index:
                problems.append(Problem(file, f"entry {i}", f"template {template!r} of video {vid} "
                                        f"matches no class in {labels_file.name}"))
                continue
            label = index[name]
        path = folder / vid if frames else folder / f"{vid}.webm"
        entries.append(Entry(vid, path, label, i, frames=frames))
    entries = _drop_duplicates(entries, file, problems, "entry")
    return Annotations("ssv2", split, file, classes, entries, problems)


def _is_int(s: str) -> bool:
    try:
        int(s)
        return True
    except ValueError:
        return False


def _frame_line(line: str) -> bool:
    """Whether `line` reads as ``<dir> <num_frames> <label>``."""
    fields = line.split()
    return len(fields) >= 3 and _is_int(fields[-1]) and _is_int(fields[-2])


def _class_at_end(line: str, index: dict[str, int]) -> str | None:
    """The class name `line` ends with (after a path), or None."""
    fields = line.split()
    return next((name for k in range(len(fields) - 1, 0, -1)
                 if (name := " ".join(fields[-k:])) in index), None)


def _list_file(root: Path, split: str) -> Path:
    """``<root>/<split>.txt``; for the validation split ``val.txt`` or ``validation.txt``,
    whichever exists (the name given first)."""
    key = _SPLITS.get(split)
    names = [split] + [s for s, k in _SPLITS.items() if key is not None and k == key and s != split]
    candidates = [root / f"{name}.txt" for name in names]
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        if not root.is_dir():
            raise AnnotationError(f"no list file for the {split} split: the data root {root.absolute()} "
                                  "is not a folder")
        looked = " and ".join(str(c.absolute()) for c in candidates)
        option = {"train": "data.train_list", "validation": "data.val_list"}.get(key)
        fix = f"`--set {option}=FILE` (relative to the data root) for gdn train, " if option else ""
        raise AnnotationError(f"no list file for the {split} split: looked for {looked}; name it with "
                              f"{fix}--list-file FILE for gdn test and gdn check-data")
    return found


def _list_line(line: str, frames: bool, index: dict[str, int], split: str) -> tuple[str, int] | str:
    """``(path, label)`` of one line of a list file, or why it cannot be used. `index` maps the
    class names (if known) to their labels."""
    expected = "'<dir> <num_frames> <label>'" if frames else "'<path> <label>'"
    fields = line.rsplit(maxsplit=2 if frames else 1)
    if frames and _frame_line(line):
        path, label = fields[0], int(fields[2])
    elif not frames and len(fields) == 2 and _is_int(fields[1]):
        path, label = fields[0], int(fields[1])
    elif (name := _class_at_end(line, index)) is not None:
        return f"the class name {name!r} stands where its label index belongs: write {index[name]}"
    elif _SPLITS.get(split) == "test" and not frames:
        return line, -1  # an unlabelled test video; its path may hold spaces
    elif len(fields) == 1:
        return f"{line!r} has no label; every line of a {split} list needs one ({expected})"
    else:
        not_int = f": {fields[-1]!r} is not a label index (a 0-based integer)" if not _is_int(fields[-1]) else ""
        return f"expected {expected}, got {line!r}{not_int}"
    if label == -1 and _SPLITS.get(split) != "test":
        return f"label -1 (unknown): every video of a {split} list needs its class index"
    if label < -1:
        return f"negative label {label}"
    return path, label


def read_list(root: str | Path, list_file: str | Path, classes_file: str | Path | None = None,
              split: str = "train") -> Annotations:
    """A TSM/MMAction2 list file; relative paths (list, class names, videos) are under ``root``.

    The format is decided for the whole file: frame folders when most lines end in two
    integers (``<dir> <num_frames> <label>``), otherwise videos (``<path> <label>``). Every
    line of a training or validation list needs its label (an integer index); only a test
    split (``split="test"``) may list a ``<path>`` alone (label -1). A line without its label,
    with a label that is not an integer (a class name where the index belongs is reported as
    that) or out of range is a problem naming the file and line. Without a class-names file
    the classes are ``"0" .. str(max label)``.
    """
    root = Path(root)
    file = _require(_under(root, list_file), "list file",
                    "pass an existing file (the list dataset's annotation list)")
    classes = None
    if classes_file is not None:
        classes_path = _require(_under(root, classes_file), "class-names file",
                                "pass an existing file, one class name a line")
        classes = [name for _, name in _read_lines(classes_path)]
    index = {name: i for i, name in enumerate(classes or [])}
    lines = _read_lines(file)
    frames = 2 * sum(_frame_line(line) for _, line in lines) > len(lines)
    problems: list[Problem] = []
    parsed: list[tuple[int, str, int]] = []
    for ln, line in lines:
        got = _list_line(line, frames, index, split)
        if isinstance(got, str):
            problems.append(Problem(file, f"line {ln}", got))
        else:
            parsed.append((ln, *got))

    if classes is None:
        classes = [str(i) for i in range(max((lb for _, _, lb in parsed), default=-1) + 1)]
    entries: list[Entry] = []
    for ln, path, label in parsed:
        if label >= len(classes):
            problems.append(Problem(file, f"line {ln}", f"label {label} out of range: "
                                    f"{len(classes)} classes in {classes_file}"))
            continue
        entries.append(Entry(path, _under(root, path), label, ln, frames=frames))
    entries = _drop_duplicates(entries, file, problems, "line")
    return Annotations("list", split, file, classes, entries, problems)


# Folder datasets: the sub-folders a split may live in, first match wins.
FOLDER_SPLITS = {"train": ("train",), "validation": ("val", "validation"), "test": ("test",)}


def _split_dir(root: Path, split: str) -> Path | None:
    return next((root / name for name in FOLDER_SPLITS[split] if (root / name).is_dir()), None)


def folder_has_splits(root: str | Path) -> bool:
    """Whether a folder dataset is split by sub-folders: ``ROOT/train`` and ``ROOT/val`` (or
    ``ROOT/validation``) both exist."""
    root = Path(root)
    return _split_dir(root, "train") is not None and _split_dir(root, "validation") is not None


def _visible_dirs(folder: Path) -> list[str]:
    with os.scandir(folder) as it:
        return sorted(e.name for e in it if not e.name.startswith(".") and e.is_dir())


def read_folder(root: str | Path, split: str = "all", list_file: str | Path | None = None) -> Annotations:
    """A folder dataset (``ROOT/<class name>/<video or frame folder>``, see the module docstring).

    ``split`` is ``"train"``, ``"val"``/``"validation"`` or ``"test"`` (read from the split
    sub-folder, or from ``list_file``), or ``"all"`` for every video of an unsplit tree. The
    classes are the sorted class folders (of ``ROOT/train`` when split by folders), the same for
    every split. Entry ids are paths relative to the folder scanned (``<class>/<name>``), the
    lines a list file holds.
    """
    root = Path(root)
    if not root.is_dir():
        raise AnnotationError(f"{root}: folder not found; --data-root must be the folder that holds one "
                              "folder per class (ROOT/<class name>/<videos>)")
    split = split if split == "all" else normalize_split(split)
    splits = folder_has_splits(root)
    classes = _visible_dirs(_split_dir(root, "train") if splits else root)
    if not classes:
        raise AnnotationError(f"{root}: no class folders; a folder dataset is ROOT/<class name>/<video files or "
                              "frame folders> (or ROOT/train/<class name>/... and ROOT/val/<class name>/...)")
    index = {name: i for i, name in enumerate(classes)}
    problems: list[Problem] = []

    if list_file is not None:
        file = _require(_under(root, list_file), "list file", "pass an existing file of <class>/<video> lines")
        entries = []
        for ln, line in _read_lines(file):
            rel = Path(line)
            if len(rel.parts) < 2:
                problems.append(Problem(file, f"line {ln}", f"expected <class name>/<video>, got {line!r}"))
            elif rel.parent.name not in index:
                problems.append(Problem(file, f"line {ln}", f"unknown class {rel.parent.name!r} (no folder "
                                        f"{root / rel.parent.name}); classes are the folders under {root}"))
            else:
                entries.append(Entry(line, root / rel, index[rel.parent.name], ln,
                                     frames=rel.suffix.lower() not in VIDEO_SUFFIXES))
        entries = _drop_duplicates(entries, file, problems, "line")
        return Annotations("folder", split, file, classes, entries, problems)

    if split == "all" and splits:
        raise AnnotationError(f"{root}: split into train/ and val/ folders; read split 'train' or 'validation'")
    if split != "all":
        base = _split_dir(root, split) if splits else None
        if base is None:
            raise AnnotationError(
                f"{root}: no {'/'.join(FOLDER_SPLITS[split])} folder and no list file for the {split} split. "
                "Put the videos in ROOT/train/<class>/ and ROOT/val/<class>/, pass list files "
                "(data.train_list, data.val_list), or let `gdn train` split ROOT/<class>/ by data.val_fraction")
    else:
        base = root
    entries = []
    for cls in _visible_dirs(base):
        if cls not in index:
            problems.append(Problem(base, f"{cls}/", f"class folder {cls!r} has no counterpart in "
                                    f"{_split_dir(root, 'train')}; rename it or add that class to train"))
            continue
        found = 0
        with os.scandir(base / cls) as it:
            for e in sorted(it, key=lambda e: e.name):
                if e.name.startswith("."):
                    continue
                rel = f"{cls}/{e.name}"
                is_dir = e.is_dir()
                if not is_dir and Path(e.name).suffix.lower() not in VIDEO_SUFFIXES:
                    problems.append(Problem(base, rel, f"not a video file ({Path(e.name).suffix or 'no'} suffix; "
                                            f"videos end in {', '.join(VIDEO_SUFFIXES[:5])}, ...) nor a frame "
                                            "folder; remove it or move it out of the class folder"))
                    continue
                entries.append(Entry(rel, base / cls / e.name, index[cls], 0, frames=is_dir))
                found += 1
        if not found and split in ("all", "train"):
            problems.append(Problem(base, f"{cls}/", "empty class folder: no videos or frame folders; add "
                                    "videos or remove the folder"))
    return Annotations("folder", split, base, classes, entries, problems)


def split_by_class(ann: Annotations, val_fraction: float, seed: int = 0) -> tuple[list[Entry], list[Entry]]:
    """A stratified, seeded train/validation split of a folder dataset's entries.

    Per class, ``round(n * val_fraction)`` videos (at least 1 when the class has 2 or more, none
    when it has 1) go to validation, chosen by a permutation from
    ``np.random.default_rng([seed, crc32(class name)])`` of the class's videos in id order: the
    same folder and seed give the same split, and adding a class leaves the others' alone.
    Returns ``(train, val)`` in id order.
    """
    train: list[Entry] = []
    val: list[Entry] = []
    by_label: dict[int, list[Entry]] = {}
    for e in ann.entries:
        by_label.setdefault(e.label, []).append(e)
    for label, name in enumerate(ann.classes):
        members = sorted(by_label.get(label, ()), key=lambda e: e.id)
        n_val = min(max(round(len(members) * val_fraction), 1), len(members) - 1) if len(members) > 1 else 0
        order = np.random.default_rng([seed, zlib.crc32(name.encode())]).permutation(len(members))
        held = set(order[:n_val].tolist())
        for i, e in enumerate(members):
            (val if i in held else train).append(e)
    return sorted(train, key=lambda e: e.id), sorted(val, key=lambda e: e.id)


def write_split_list(path: str | Path, entries: list[Entry]) -> None:
    """A folder-dataset list file: one ``<class>/<video>`` line per entry (``read_folder``'s
    ``list_file``)."""
    Path(path).write_text("".join(f"{e.id}\n" for e in entries))


def read_annotations(name: str, root: str | Path, split: str, *, label_order: str = "sorted",
                     frames_dir: str | Path | None = None, list_file: str | Path | None = None,
                     classes_file: str | Path | None = None) -> Annotations:
    """Read one split of dataset ``name`` (``ssv1``, ``ssv2``, ``list`` or ``folder``); problems
    are collected, not raised (see :meth:`Annotations.raise_for_problems`).

    For ``list`` without ``list_file``, ``<root>/<split>.txt`` is read (the validation split
    from ``val.txt`` or ``validation.txt``, whichever exists).
    """
    if name == "ssv1":
        return read_ssv1(root, split, label_order)
    if name == "ssv2":
        return read_ssv2(root, split, frames_dir)
    if name == "list":
        return read_list(root, list_file or _list_file(Path(root), split), classes_file, split)
    if name == "folder":
        return read_folder(root, split, list_file)
    raise ValueError(f"unknown dataset {name!r}: use one of {', '.join(DATASETS)}")
