"""The few-shot / base-to-novel / HM protocol, as CoOp, CoCoOp and MaPLe define it."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vlmeft.data import protocol
from vlmeft.data.types import ClassificationTask, Split
from vlmeft.errors import VlmeftError


def _split(labels, key="s") -> Split:
    labels = np.asarray(labels, dtype=np.int64)
    images = np.zeros((len(labels), 4, 4, 3), dtype=np.uint8)
    images[:, 0, 0, 0] = np.arange(len(labels)) % 256  # a per-image marker
    images[:, 0, 0, 1] = labels
    return Split(images=images, labels=labels, key=key)


def test_few_shot_is_class_balanced_and_deterministic():
    split = _split(np.repeat(np.arange(5), 20))
    a = protocol.sample_few_shot(split, 4, seed=1)
    b = protocol.sample_few_shot(split, 4, seed=1)
    c = protocol.sample_few_shot(split, 4, seed=2)
    assert np.bincount(a.labels).tolist() == [4] * 5
    assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.images, c.images)
    assert a.key != c.key and a.key.startswith("s|")
    # the images really belong to their labels
    assert np.array_equal(a.images[:, 0, 0, 1], a.labels)


def test_few_shot_does_not_touch_global_rngs():
    random.seed(123)
    np.random.seed(123)
    torch.manual_seed(123)
    states = (random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state().clone())
    protocol.few_shot_splits(
        ClassificationTask("t", ["a", "b"], ["{}"], _split([0, 1] * 10), _split([0, 1] * 5), _split([0, 1])),
        shots=3, seed=7,
    )
    assert random.getstate() == states[0]
    assert np.array_equal(np.random.get_state()[1], states[1])
    assert torch.equal(torch.get_rng_state(), states[2])


def test_few_shot_with_more_shots_than_images_takes_all():
    split = _split([0] * 10 + [1] * 2)
    out = protocol.sample_few_shot(split, 4, seed=0)
    assert np.bincount(out.labels).tolist() == [4, 2]


def test_few_shot_rejects_non_positive_shots():
    with pytest.raises(VlmeftError, match="shots"):
        protocol.sample_few_shot(_split([0, 1]), 0, seed=0)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 6), min_size=1, max_size=60), st.integers(1, 8), st.integers(0, 10**6))
def test_few_shot_property(labels, shots, seed):
    labels = np.asarray(labels)
    idx = protocol.few_shot_indices(labels, shots, seed)
    assert len(set(idx.tolist())) == len(idx)  # no repeats
    counts = np.bincount(labels[idx], minlength=7)
    expected = np.minimum(np.bincount(labels, minlength=7), shots)
    assert counts.tolist() == expected.tolist()
    assert np.array_equal(idx, protocol.few_shot_indices(labels, shots, seed))


@pytest.mark.parametrize("shots,val_shots", [(1, 1), (2, 2), (4, 4), (8, 4), (16, 4)])
def test_val_gets_min_k_4_shots(shots, val_shots):
    task = ClassificationTask("t", ["a", "b", "c"], ["{}"], _split(np.repeat(np.arange(3), 20), "tr"),
                              _split(np.repeat(np.arange(3), 10), "va"), _split([0, 1, 2], "te"))
    train, val = protocol.few_shot_splits(task, shots, seed=1)
    assert np.bincount(train.labels).tolist() == [shots] * 3
    assert np.bincount(val.labels).tolist() == [val_shots] * 3
    assert val.key.startswith("va|")


def test_base_novel_split_first_half_of_sorted_labels_relabelled():
    names = ["c0", "c1", "c2", "c3", "c4"]
    labels = np.repeat(np.arange(5), 3)
    task = ClassificationTask("t", names, ["a {}."], _split(labels, "tr"), _split(labels, "va"), _split(labels, "te"),
                              shifted={"dark": _split(labels, "dk")})
    base, novel = protocol.base_novel(task)
    assert base.classnames == ["c0", "c1", "c2"] and novel.classnames == ["c3", "c4"]  # ceil(5/2) = 3
    for part, offset in ((base, 0), (novel, 3)):
        for split in (part.train, part.val, part.test, part.shifted["dark"]):
            assert set(split.labels.tolist()) == set(range(len(part.classnames)))
            # relabelled images keep their original class (stored in the marker)
            assert np.array_equal(split.images[:, 0, 0, 1], split.labels + offset)
    assert base.test.key != novel.test.key != task.test.key
    assert protocol.base_novel_labels(4) == ([0, 1], [2, 3])


def test_hm_reproduces_published_numbers():
    # MaPLe (base 82.28, new 75.14) and zero-shot CLIP (69.34, 74.22), ViT-B/16, 11-dataset averages.
    assert round(protocol.base_novel_hm([82.28], [75.14])["hm"], 2) == 78.55
    assert round(protocol.base_novel_hm([69.34], [74.22])["hm"], 2) == 71.70


def test_hm_averages_before_the_harmonic_mean():
    base, novel = [90.0, 50.0], [10.0, 70.0]
    out = protocol.base_novel_hm(base, novel)
    assert out["base"] == 70.0 and out["novel"] == 40.0
    assert out["hm"] == pytest.approx(2 * 70 * 40 / 110)
    mean_of_hms = np.mean([protocol.harmonic_mean(b, n) for b, n in zip(base, novel)])
    assert abs(out["hm"] - mean_of_hms) > 1  # not the mean of per-dataset HMs
    assert protocol.harmonic_mean(0.0, 50.0) == 0.0
    with pytest.raises(VlmeftError):
        protocol.base_novel_hm([1.0], [])


def test_mean_std_over_seeds():
    mean, std = protocol.mean_std([70.0, 72.0, 74.0])
    assert mean == pytest.approx(72.0)
    assert std == pytest.approx(np.sqrt(8 / 3))
    assert protocol.mean_std([5.0]) == (5.0, 0.0)
    with pytest.raises(VlmeftError):
        protocol.mean_std([])
