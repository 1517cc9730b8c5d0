"""The class-balanced TrainSampler keeps the plain sampler's determinism, sharding and resume."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from gdn.data.loader import TrainSampler, class_balanced_weights

LABELS = [0] * 60 + [1] * 30 + [2] * 6  # 10:5:1


def keys(sampler: TrainSampler, epoch: int, start_batch: int = 0) -> list[int]:
    sampler.set_epoch(epoch, start_batch)
    return [i for i, e in sampler]


def test_balanced_sampler_draws_every_class_equally_often():
    weights = class_balanced_weights(LABELS)
    assert weights.tolist() == [1 / 60] * 60 + [1 / 30] * 30 + [1 / 6] * 6
    counts = Counter()
    for epoch in range(30):
        counts.update(LABELS[i] for i in keys(TrainSampler(len(LABELS), 8, seed=0, weights=weights), epoch))
    total = sum(counts.values())
    assert total == 30 * len(LABELS)  # an epoch is still len(dataset) samples
    for c in range(3):
        assert abs(counts[c] / total - 1 / 3) < 0.03, counts  # plain shuffling: 0.63 / 0.31 / 0.06


def test_balanced_sampler_is_a_function_of_seed_and_epoch_and_resumes_exactly():
    weights = class_balanced_weights(LABELS)
    a = keys(TrainSampler(len(LABELS), 8, seed=3, weights=weights), 2)
    assert a == keys(TrainSampler(len(LABELS), 8, seed=3, weights=weights), 2)
    assert a != keys(TrainSampler(len(LABELS), 8, seed=3, weights=weights), 3)
    assert a != keys(TrainSampler(len(LABELS), 8, seed=4, weights=weights), 2)
    # a resumed epoch skips the first batches and then yields exactly what was left
    assert keys(TrainSampler(len(LABELS), 8, seed=3, weights=weights), 2, start_batch=5) == a[40:]
    # two ranks split one draw between them
    r0 = keys(TrainSampler(len(LABELS), 8, seed=3, weights=weights, rank=0, world_size=2), 2)
    r1 = keys(TrainSampler(len(LABELS), 8, seed=3, weights=weights, rank=1, world_size=2), 2)
    assert r0 == a[0::2] and r1 == a[1::2]


def test_weights_must_fit_the_dataset():
    with pytest.raises(ValueError, match="one per index"):
        TrainSampler(5, 2, weights=np.ones(4))
