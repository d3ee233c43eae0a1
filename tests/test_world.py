"""The procedural world: determinism, closed vocabulary, geometry of scenes, caching."""

from __future__ import annotations

import re

import numpy as np
import pytest

from vlmeft.world import draw
from vlmeft.world.pool import LazyPool, Pool, build_pool, load_or_build_pool, open_pool, render_sample
from vlmeft.world.samples import render_digit, render_object, render_scene
from vlmeft.world.vocab import BACKGROUNDS, COLORS, HELD_OUT_BACKGROUNDS, IMAGE_SIZE, SHAPES, caption_words


def _words(caption: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", caption.lower())


def test_samples_are_deterministic_per_seed_and_index():
    a, b = render_sample(3, 17), render_sample(3, 17)
    assert np.array_equal(a.image, b.image) and a.captions == b.captions
    c = render_sample(4, 17)
    assert not np.array_equal(a.image, c.image)


def test_images_and_captions_use_the_closed_vocabulary():
    vocab = caption_words()
    pool = build_pool(300, seed=1)
    assert pool.images.shape == (300, IMAGE_SIZE, IMAGE_SIZE, 3) and pool.images.dtype == np.uint8
    seen = set()
    for caps in pool.captions:
        assert len(caps) == 3
        for cap in caps:
            words = _words(cap)
            assert words, cap
            assert set(words) <= vocab, (cap, set(words) - vocab)
            seen.update(words)
    # Every shape and colour shows up in a few hundred samples.
    assert set(SHAPES) <= seen and set(COLORS) <= seen
    assert not set(HELD_OUT_BACKGROUNDS) & seen  # the shift texture is never captioned


def test_object_caption_names_its_shape_and_true_attributes():
    rng = np.random.default_rng(0)
    for _ in range(50):
        s = render_object(rng)
        obj = s.objects[0]
        for cap in s.captions:
            words = _words(cap)
            assert obj["shape"] in words or "shape" in words or "object" in words
            named_colors = [w for w in words if w in COLORS]
            assert named_colors in ([], [obj["color"]])
            named_bg = [w for w in words if w in BACKGROUNDS]
            assert named_bg in ([], [obj["background"]])


def test_pretraining_never_draws_held_out_backgrounds():
    rng = np.random.default_rng(5)
    kinds = {render_object(rng).objects[0]["background"] for _ in range(200)}
    assert kinds == set(BACKGROUNDS)


def test_pinned_attributes_are_respected():
    rng = np.random.default_rng(2)
    s = render_object(rng, shape="star", color="blue", size="large", background="checkered")
    assert s.objects[0]["shape"] == "star" and s.objects[0]["color"] == "blue"
    x0, y0, x1, y1 = s.objects[0]["box"]
    assert x1 - x0 >= 19  # large radius >= 9.5 px


def test_shape_masks_differ_and_stay_in_bounds():
    masks = {s: draw.shape_mask(s, 16, 16, 10) for s in SHAPES}
    for name, m in masks.items():
        assert m.shape == (IMAGE_SIZE, IMAGE_SIZE) and 0 <= m.min() and m.max() <= 1
        assert m.sum() > 20, name
    assert masks["ring"].sum() < 0.8 * masks["circle"].sum()
    names = list(masks)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert np.abs(masks[a] - masks[b]).sum() > 10, (a, b)


def test_scene_geometry_and_relations():
    rng = np.random.default_rng(7)
    for _ in range(40):
        s = render_scene(rng)
        k = len(s.objects)
        assert 2 <= k <= 3 and s.boxes.shape == (k, 4)
        assert (s.boxes >= 0).all() and (s.boxes <= IMAGE_SIZE).all()
        pairs = {(o["color"], o["shape"]) for o in s.objects}
        assert len(pairs) == k  # every object is nameable by colour + shape
        for i in range(k):  # boxes never overlap
            for j in range(i + 1, k):
                a, b = s.boxes[i], s.boxes[j]
                assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]
        by_name = {f"{o['color']} {o['shape']}": o for o in s.objects}
        for cap in s.captions:
            m = re.fullmatch(r"a (\w+ \w+) (left of|right of|above|below) a (\w+ \w+)\.?", cap)
            if m:
                a, rel, b = by_name[m.group(1)], m.group(2), by_name[m.group(3)]
                dx, dy = b["cx"] - a["cx"], b["cy"] - a["cy"]
                expect = {"left of": dx > 0, "right of": dx < 0, "above": dy > 0, "below": dy < 0}[rel]
                assert expect, (cap, a, b)


def test_paper_digits_look_like_uci_digits():
    rng = np.random.default_rng(0)
    s = render_digit(rng, 4, paper=True, uci=True)
    img = s.image.astype(np.float64)
    assert np.allclose(img[..., 0], img[..., 1])  # grey
    assert "4" in _words(" ".join(s.captions)) or "four" in _words(" ".join(s.captions))
    # a constant 8x8 grid upsamples to a constant image
    flat = draw.upsample_grid(np.full((8, 8), 100.0))
    assert flat.shape == (IMAGE_SIZE, IMAGE_SIZE) and np.allclose(flat, 100.0)


def test_pool_cache_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("VLMEFT_CACHE", str(tmp_path))
    a = load_or_build_pool(50, seed=9)
    assert list(tmp_path.glob("pool-*.npz"))
    b = load_or_build_pool(50, seed=9)
    assert np.array_equal(a.images, b.images) and a.captions == b.captions
    # a pool's prefix does not depend on its length
    c = build_pool(20, seed=9)
    assert np.array_equal(c.images, a.images[:20])
    # open_pool reads the cached pool; without a cache it renders lazily and writes nothing
    assert isinstance(open_pool(50, seed=9), Pool)
    lazy = open_pool(40, seed=9)
    assert isinstance(lazy, LazyPool) and lazy.rendered == 0 and len(list(tmp_path.glob("pool-*"))) == 1


def test_lazy_pool_renders_only_what_is_asked_and_matches_the_eager_pool():
    eager, lazy = build_pool(30, seed=4), LazyPool(30, seed=4)
    idx = [7, 3, 7, 29]
    assert np.array_equal(lazy.images_at(idx), eager.images[idx]) and lazy.rendered == 3
    assert [lazy.captions_at(i) for i in idx] == [eager.captions[i] for i in idx] and lazy.rendered == 3
    assert np.array_equal(lazy.images_at(range(30)), eager.images) and lazy.rendered == 30


@pytest.mark.parametrize("kind", BACKGROUNDS + HELD_OUT_BACKGROUNDS)
def test_backgrounds(kind):
    bg = draw.background(kind, np.random.default_rng(1))
    assert bg.shape == (IMAGE_SIZE, IMAGE_SIZE, 3) and bg.min() >= 0 and bg.max() <= 255
    with pytest.raises(ValueError):
        draw.background("plaid", np.random.default_rng(1))


def test_scene_with_pinned_pairs():
    rng = np.random.default_rng(3)
    pairs = [("red", "circle"), ("red", "star"), ("blue", "circle")]
    s = render_scene(rng, pairs=pairs)
    assert sorted((o["color"], o["shape"]) for o in s.objects) == sorted(pairs)
    for o, box in zip(s.objects, s.boxes):  # boxes follow the (shuffled) object order
        assert np.allclose(box, [o["cx"] - o["r"], o["cy"] - o["r"], o["cx"] + o["r"], o["cy"] + o["r"]])
    with pytest.raises(ValueError):
        render_scene(rng, pairs=[("red", "circle"), ("red", "circle")])


def test_marked_scene_circles_one_object_and_captions_only_it():
    from vlmeft.world.samples import render_marked_scene

    confusable = 0
    for i in range(60):
        s = render_marked_scene(np.random.default_rng([7, i]))
        assert s.target is not None and 0 <= s.target < len(s.objects)
        target = s.objects[s.target]
        name = f"{target['color']} {target['shape']}"
        # Every caption names the marked object, and only it.
        assert all(cap.rstrip(".").endswith(name) and cap.count(" and ") == 0 for cap in s.captions), s.captions
        others = [o for k, o in enumerate(s.objects) if k != s.target]
        confusable += any(o["color"] == target["color"] or o["shape"] == target["shape"] for o in others)
    # About half the marked scenes hold a distractor sharing the target's colour or shape.
    assert 15 <= confusable <= 50, confusable


def test_marking_is_opt_in_and_leaves_unmarked_scenes_unchanged():
    pairs = [("red", "square"), ("blue", "star"), ("green", "ring")]
    a = render_scene(np.random.default_rng(11), pairs=pairs, noise=0.0)
    b = render_scene(np.random.default_rng(11), pairs=pairs, noise=0.0, mark=True)
    assert a.target is None and b.target is not None
    # Same objects and boxes; pixels differ only on a red outline around the marked box.
    assert np.array_equal(a.boxes, b.boxes)
    diff = np.abs(a.image.astype(int) - b.image.astype(int)).sum(axis=2) > 0
    assert diff.any()
    ys, xs = np.nonzero(diff)
    x0, y0, x1, y1 = b.boxes[b.target]
    cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2
    # Every changed pixel lies within 2.2 box half-widths of the target's centre.
    assert (np.maximum(np.abs(xs + 0.5 - cx), np.abs(ys + 0.5 - cy)) <= 2.2 * half + 1.5).all()
    changed = b.image[diff].astype(int)
    assert (changed[:, 0] > changed[:, 1]).mean() > 0.8  # mostly red-dominant pixels
