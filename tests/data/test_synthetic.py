"""gdn.data.synthetic: official layouts, determinism, the mirror rule, and time-reversed
pairs that no single frame separates."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from gdn.data.decode import count_frames, list_frame_files, read_frames
from gdn.data.synthetic import (
    ALL_CLASSES,
    PAIRS,
    _background,
    class_name,
    generate,
    render_clip,
    sample_clip,
)
from gdn.data.transforms import mirror_class_name

TINY = dict(classes=len(PAIRS), train_per_class=2, val_per_class=1, test_per_class=1,
            height=32, width=48, min_frames=6, max_frames=9, workers=1)
K = 2 * len(PAIRS)


@pytest.fixture(scope="module")
def ssv2(tmp_path_factory):
    root = tmp_path_factory.mktemp("ssv2")
    return root, generate(root, format="ssv2", seed=3, **TINY)


@pytest.fixture(scope="module")
def ssv1(tmp_path_factory):
    root = tmp_path_factory.mktemp("ssv1")
    return root, generate(root, format="ssv1", seed=3, **TINY)


def test_ssv2_layout_and_annotations(ssv2):
    root, summary = ssv2
    assert summary.counts == {"train": 2 * K, "validation": K, "test": K}
    labels = json.loads((root / "something-something-v2-labels.json").read_text())
    assert list(labels) == sorted(labels) == sorted(ALL_CLASSES)
    assert list(labels.values()) == [str(i) for i in range(K)]
    assert summary.classes == list(labels)

    ids = []
    for split, n in (("train", 2 * K), ("validation", K)):
        entries = json.loads((root / f"something-something-v2-{split}.json").read_text())
        assert len(entries) == n
        for e in entries:
            assert set(e) == {"id", "label", "template", "placeholders"}
            assert "[something]" in e["template"]
            name = e["template"].replace("[", "").replace("]", "")
            assert name in labels
            assert e["label"].lower() == e["template"].replace("[something]", e["placeholders"][0]).lower()
        counts = {name: sum(class_name(e["template"]) == name for e in entries) for name in labels}
        assert set(counts.values()) == {n // K}  # balanced
        ids += [e["id"] for e in entries]
    test = json.loads((root / "something-something-v2-test.json").read_text())
    assert all(set(e) == {"id"} for e in test) and len(test) == K
    ids += [e["id"] for e in test]

    assert len(set(ids)) == len(ids) and all(i.isdigit() for i in ids)
    videos = root / "20bn-something-something-v2"
    assert sorted(p.name for p in videos.iterdir()) == sorted(f"{i}.webm" for i in ids)
    for clip in summary.clips[:6]:
        assert count_frames(clip.path) == clip.num_frames
        assert [f.shape for f in read_frames(clip.path, [0])] == [(32, 48, 3)]


def test_ssv1_layout_and_annotations(ssv1, ssv2):
    root, summary = ssv1
    lines = (root / "something-something-v1-labels.csv").read_text().splitlines()
    assert sorted(lines) == sorted(ALL_CLASSES) and lines != sorted(lines)  # SSv1: not alphabetical
    assert summary.classes == lines

    ids = []
    for split, n in (("train", 2 * K), ("validation", K)):
        rows = [line.split(";") for line in
                (root / f"something-something-v1-{split}.csv").read_text().splitlines()]
        assert len(rows) == n and all(len(r) == 2 and r[1] in lines for r in rows)
        ids += [r[0] for r in rows]
    test_ids = (root / "something-something-v1-test.csv").read_text().splitlines()
    assert len(test_ids) == K and all(";" not in i for i in test_ids)
    ids += test_ids

    folders = root / "20bn-something-something-v1"
    assert sorted(p.name for p in folders.iterdir()) == sorted(ids)
    for clip in summary.clips[:6]:
        files = list_frame_files(clip.path)
        assert [f.name for f in files] == [f"{t:05d}.jpg" for t in range(1, clip.num_frames + 1)]
        assert [f.shape for f in read_frames(clip.path, [0])] == [(32, 48, 3)]

    # the same seed gives the same clips whatever the format
    assert [(c.id, c.class_name, c.num_frames) for c in summary.clips] == \
        [(c.id, c.class_name, c.num_frames) for c in ssv2[1].clips]


def test_deterministic_by_seed(ssv2, tmp_path):
    root, summary = ssv2
    # same seed in parallel workers: identical annotation bytes and decoded frames
    again = generate(tmp_path / "same", format="ssv2", seed=3, **{**TINY, "workers": 2})
    for name in ("labels", "train", "validation", "test"):
        file = f"something-something-v2-{name}.json"
        assert (root / file).read_bytes() == (tmp_path / "same" / file).read_bytes()
    for a, b in zip(summary.clips, again.clips):
        indices = range(a.num_frames)
        np.testing.assert_array_equal(np.stack(read_frames(a.path, indices)), np.stack(read_frames(b.path, indices)))

    other = generate(tmp_path / "other", format="ssv2", seed=4, **TINY)
    assert [c.id for c in other.clips] != [c.id for c in summary.clips]

    with pytest.raises(FileExistsError, match="overwrite"):
        generate(tmp_path / "other", format="ssv2", seed=4, **TINY)


def test_every_class_mirrors_to_a_class():
    for name in ALL_CLASSES:
        mirrored = mirror_class_name(name)
        assert mirrored in ALL_CLASSES and mirror_class_name(mirrored) == name
        sided = {"left", "right"} & set(name.split())
        assert (mirrored != name) == bool(sided)  # up/down, closer/away, covering: self-mirror
    assert mirror_class_name("Moving something from left to right") == "Moving something from right to left"
    assert mirror_class_name("Turning something to the right") == "Turning something to the left"


def test_pair_members_are_exact_time_reverses():
    # Same random draws: the second class's clip is the first's played backwards, so both
    # show the same frames and only their order differs (no single frame separates them).
    for forward, backward, _ in PAIRS:
        a_name, b_name = class_name(forward), class_name(backward)
        a = sample_clip(a_name, 10, 32, 48, np.random.default_rng(7))
        b = sample_clip(b_name, 10, 32, 48, np.random.default_rng(7))
        for field in ("center", "radius", "angle", "cover"):
            np.testing.assert_array_equal(getattr(b, field), getattr(a, field)[::-1])
        np.testing.assert_array_equal(render_clip(b), render_clip(a)[::-1])


def _draw(name, n=300, seed=0):
    rng = np.random.default_rng(seed)
    return [sample_clip(name, 12, 96, 128, rng) for _ in range(n)]


def test_motion_directions_match_class_names():
    for name, field, axis, sign in [
        ("Moving something from left to right", "center", 0, +1),
        ("Moving something from right to left", "center", 0, -1),
        ("Moving something up", "center", 1, -1),  # y points down
        ("Moving something down", "center", 1, +1),
        ("Moving something closer", "radius", None, +1),
        ("Moving something away", "radius", None, -1),
        ("Turning something to the right", "angle", None, +1),  # clockwise on screen
        ("Turning something to the left", "angle", None, -1),
        ("Covering something", "cover", None, +1),
        ("Uncovering something", "cover", None, -1),
    ]:
        for clip in _draw(name, n=20):
            values = getattr(clip, field) if axis is None else getattr(clip, field)[:, axis]
            assert sign * (values[-1] - values[0]) > 0, name
            assert np.all(sign * np.diff(values) >= -1e-9), name  # monotonic


def test_rendered_object_is_where_the_metadata_says():
    clip = sample_clip("Moving something from left to right", 8, 96, 128, np.random.default_rng(1))
    clip = dataclasses.replace(clip, shape="disc", texture="plain")
    frames = render_clip(clip)
    background = _background(clip.background, clip.background_seed, 96, 128)
    for frame, (cx, cy) in zip(frames, clip.center):
        ys, xs = np.nonzero(np.any(frame != background, axis=-1))
        assert abs(xs.mean() + 0.5 - cx) < 1.0 and abs(ys.mean() + 0.5 - cy) < 1.0


def test_mirror_images_follow_the_mirror_class_distribution():
    # Label-aware flip is correct only if a flipped "left to right" clip looks like a
    # "right to left" one: the mirrored start/end x positions match that class's.
    width = 128
    a = np.array([[c.center[0, 0], c.center[-1, 0]] for c in _draw("Moving something from left to right")])
    b = np.array([[c.center[0, 0], c.center[-1, 0]] for c in _draw("Moving something from right to left", seed=1)])
    mirrored = width - a
    for k in range(2):
        qa, qb = np.quantile(mirrored[:, k], [0.1, 0.5, 0.9]), np.quantile(b[:, k], [0.1, 0.5, 0.9])
        np.testing.assert_allclose(qa, qb, atol=0.06 * width)
    # and the travel is large: the motion crosses most of the frame
    assert np.min(a[:, 1] - a[:, 0]) > 0.4 * width


def test_invalid_arguments(tmp_path):
    with pytest.raises(ValueError, match="unknown synthetic classes"):
        generate(tmp_path, classes=["Moving something sideways"])
    with pytest.raises(ValueError, match="mirror"):
        generate(tmp_path, classes=["Moving something from left to right"])
    with pytest.raises(ValueError, match="even"):
        generate(tmp_path, height=33)
