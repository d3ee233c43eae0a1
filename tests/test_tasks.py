"""The named embedded tasks: splits, keys, vocabulary and the retrieval/grounding metrics."""

from __future__ import annotations

import re

import numpy as np
import pytest

from vlmeft.data.tasks import (
    crop_boxes, get_task, grounding_accuracy, retrieval_metrics, task_names, uci_to_images,
)
from vlmeft.data.types import ClassificationTask, SceneTask
from vlmeft.errors import VlmeftError
from vlmeft.world.vocab import COLORS, GENERATOR_VERSION, IMAGE_SIZE, SHAPES, caption_words

CLASSIFICATION = ["digits", "shapes", "colors", "color-shape"]


def test_names_and_errors():
    assert task_names() == ["digits", "shapes", "colors", "color-shape", "scenes", "world-vqa", "world-captions"]
    with pytest.raises(VlmeftError, match="unknown task 'shape'.*shapes"):
        get_task("shape")
    with pytest.raises(VlmeftError, match="seed"):
        get_task("shapes", seed=-1)


def test_digits_are_real_uci_digits_with_a_fixed_stratified_split():
    from sklearn.datasets import load_digits

    t = get_task("digits")
    assert isinstance(t, ClassificationTask) and t.classnames == [str(d) for d in range(10)]
    assert len(t.train) + len(t.val) + len(t.test) == len(load_digits().target) == 1797
    for split in (t.train, t.val, t.test):
        assert split.images.shape[1:] == (IMAGE_SIZE, IMAGE_SIZE, 3) and split.images.dtype == np.uint8
        counts = np.bincount(split.labels, minlength=10)
        assert counts.min() > 0.8 * counts.mean()  # stratified
    # dark ink on a light page, like the rendered paper digits
    assert t.test.images.mean() > 128
    assert np.array_equal(t.shifted["inverted"].labels, t.test.labels)
    assert abs(t.shifted["inverted"].images.astype(int) + t.test.images.astype(int) - 255).max() <= 1
    # the split is a function of the seed only
    again = get_task.__wrapped__("digits", 0)
    assert np.array_equal(again.test.images, t.test.images)
    other = get_task("digits", seed=1)
    assert not np.array_equal(other.test.labels, t.test.labels)


def test_uci_conversion_keeps_ink_where_the_grid_has_it():
    grid = np.zeros((1, 8, 8))
    grid[0, 3:5, 3:5] = 16
    img = uci_to_images(grid)[0, ..., 0]
    assert img[16, 16] < 60 and img[1, 1] == 255


@pytest.mark.parametrize("name", ["shapes", "colors", "color-shape"])
def test_synthetic_tasks_are_balanced_seeded_and_shifted(name):
    t = get_task(name)
    c = len(t.classnames)
    for split in [t.train, t.val, t.test, *t.shifted.values()]:
        counts = np.bincount(split.labels, minlength=c)
        assert counts.min() == counts.max() > 0
        assert split.images.shape[1:] == (IMAGE_SIZE, IMAGE_SIZE, 3)
    assert len(t.shifted) >= 2
    keys = [s.key for s in [t.train, t.val, t.test, *t.shifted.values()]]
    assert len(set(keys)) == len(keys)
    assert all(name in k and "seed0" in k and GENERATOR_VERSION in k for k in keys)
    rebuilt = get_task.__wrapped__(name, 0)
    assert np.array_equal(rebuilt.test.images, t.test.images)
    assert not np.array_equal(get_task(name, 1).test.images, t.test.images)
    # a shifted domain really is a different image distribution from the clean test set
    assert not np.array_equal(next(iter(t.shifted.values())).images, t.test.images)


def test_class_names_and_templates_use_the_world_vocabulary():
    vocab = caption_words()
    for name in CLASSIFICATION:
        t = get_task(name)
        assert len(t.templates) >= 3
        for tpl in t.templates:
            assert tpl.count("{}") == 1
            for cls in t.classnames:
                words = re.findall(r"[a-z0-9]+", tpl.format(cls))
                assert set(words) <= vocab, (name, tpl, cls)
    assert set(get_task("shapes").classnames) == set(SHAPES)
    assert set(get_task("colors").classnames) == set(COLORS)
    assert len(get_task("color-shape").classnames) >= 30


def test_scenes_task():
    t = get_task("scenes")
    assert isinstance(t, SceneTask)
    assert len(t.images) == len(t.captions) >= 100 and len(t.grounding) >= 100
    for s in t.grounding:
        assert 0 <= s.target < len(s.boxes)
        m = re.fullmatch(r"the (\w+) (\w+)", s.expression)
        assert m and m.group(1) in COLORS and m.group(2) in SHAPES
        # boxes are the drawn objects: the target box holds ink that differs from the corners
        x0, y0, x1, y1 = s.boxes[s.target].astype(int)
        assert s.image[y0:y1, x0:x1].std() > 5
    # grounding scenes hold two or three objects
    assert {len(s.boxes) for s in t.grounding} == {2, 3}
    # the expression names exactly one object: colour-shape pairs in a scene are distinct
    crops = crop_boxes(t.grounding[0].image, t.grounding[0].boxes)
    assert crops.shape == (len(t.grounding[0].boxes), IMAGE_SIZE, IMAGE_SIZE, 3)


def test_retrieval_metrics():
    n = 10
    assert retrieval_metrics(np.eye(n)) == {"i2t_R@1": 100.0, "t2i_R@1": 100.0, "i2t_R@5": 100.0, "t2i_R@5": 100.0}
    # captions shifted by one: image i matches caption i+1 best, its own caption second
    sim = np.eye(n) * 0.5 + np.roll(np.eye(n), 1, axis=1)
    m = retrieval_metrics(sim)
    assert m["i2t_R@1"] == 0.0 and m["i2t_R@5"] == 100.0 and m["t2i_R@1"] == 0.0
    rng = np.random.default_rng(0)
    rand = retrieval_metrics(rng.normal(size=(200, 200)))
    assert rand["i2t_R@1"] < 5 and rand["t2i_R@5"] < 10
    with pytest.raises(VlmeftError):
        retrieval_metrics(np.zeros((3, 4)))


def test_grounding_accuracy():
    samples = get_task("scenes").grounding[:4]
    assert grounding_accuracy([s.target for s in samples], samples) == 100.0
    assert grounding_accuracy([(s.target + 1) % len(s.boxes) for s in samples], samples) == 0.0
    with pytest.raises(VlmeftError):
        grounding_accuracy([0], samples)
