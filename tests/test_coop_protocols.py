"""The four protocols on the CoOp miniature: few-shot draws in Dassl's order (cached as
JSON), base-to-novel class subsampling after the draw, cross-dataset and domain
generalisation from ImageNet, and unreadable images skipped on request."""

from __future__ import annotations

import json
import math
import random
import shutil
from collections import Counter, defaultdict

import numpy as np
import pytest

from vlmeft.bench.cells import CellRunner
from vlmeft.bench.plan import Cell
from vlmeft.data import coop, protocol
from vlmeft.data.coop._fewshot import FEWSHOT_DIR, dassl_pick
from vlmeft.data.loading import UnreadableImage


def _dassl_reference(labels, shots, seed):  # noqa: ANN001, ANN202
    """Dassl's generate_fewshot_dataset as CoOp runs it, with the *global* random module
    seeded by set_random_seed(seed): per class in first-appearance order, random.sample."""
    state = random.getstate()
    try:
        random.seed(seed)
        tracker = defaultdict(list)
        for i, y in enumerate(labels):
            tracker[y].append(i)
        out = []
        for items in tracker.values():
            out.extend(random.sample(items, shots) if len(items) >= shots else items)
        return out
    finally:
        random.setstate(state)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_dassl_pick_matches_the_official_semantics(seed):
    labels = [3, 1, 3, 0, 1, 1, 3, 0, 2, 2, 2, 2, 0]  # classes first seen in the order 3, 1, 0, 2
    for shots in (1, 2, 3, 5):
        assert dassl_pick(labels, shots, random.Random(seed)) == _dassl_reference(labels, shots, seed)
    picked = dassl_pick(labels, 2, random.Random(seed))
    assert [labels[i] for i in picked[::2]] == [3, 1, 0, 2]  # first-appearance order, two per class
    assert len(dassl_pick(labels, 4, random.Random(seed))) == 3 + 3 + 3 + 4  # smaller classes: all of them


@pytest.mark.parametrize("dataset", ["caltech101", "fgvc_aircraft", "imagenet"])
def test_few_shot_draw_sizes_cache_and_determinism(coop_root, tmp_path, dataset):
    folder = coop.reader(dataset).folder
    shutil.copytree(coop_root / folder, tmp_path / folder)
    task = coop.load_task(dataset, tmp_path)
    for shots in (1, 2, 4):
        train, val = protocol.few_shot_splits(task, shots, seed=1)
        per_class = Counter(train.labels.tolist())
        assert per_class == {c: min(shots, 3) for c in range(4)}
        # val: min(shots, 4) per class from 2 val images; ImageNet: from the 3 - shots train images left
        per_val = {"imagenet": {1: 1, 2: 1, 4: 0}}.get(dataset, {1: 1, 2: 2, 4: 2})[shots]
        assert Counter(val.labels.tolist()) == ({c: per_val for c in range(4)} if per_val else {})
        if dataset == "imagenet":  # val shots come from the train images not drawn for train
            assert not set(map(str, train.images)) & set(map(str, val.images))
            assert all("/images/train/" in str(p) for p in val.images)
    cached = sorted((tmp_path / folder / FEWSHOT_DIR).iterdir())
    assert [p.name.split("-")[:2] for p in cached] == [["shot_1", "seed_1"], ["shot_2", "seed_1"], ["shot_4", "seed_1"]]
    assert all(p.suffix == ".json" for p in cached)  # never pickle
    doc = json.loads(cached[1].read_text())
    assert doc["dataset"] == dataset and doc["shots"] == 2 and doc["seed"] == 1
    assert all(len(e) == 3 and (tmp_path / folder / e[0]).is_file() for e in doc["train"] + doc["val"])
    # The cache is what is read next time (a different but valid draw written into it wins) ...
    train, _ = protocol.few_shot_splits(task, 2, seed=1)
    doc["train"] = doc["train"][::-1]
    cached[1].write_text(json.dumps(doc))
    again, _ = protocol.few_shot_splits(task, 2, seed=1)
    assert [str(p) for p in again.images] == [str(p) for p in train.images][::-1]
    # ... and a cache that does not fit the split is ignored: the same draw as before.
    doc["train"][0][0] = "no/such/image.jpg"
    cached[1].write_text(json.dumps(doc))
    fresh, _ = protocol.few_shot_splits(task, 2, seed=1)
    assert [str(p) for p in fresh.images] == [str(p) for p in train.images]
    assert [str(p) for p in protocol.few_shot_splits(task, 2, seed=2)[0].images] != [str(p) for p in train.images]


def test_base_to_novel_subsamples_classes_after_the_draw(coop_root):
    task = coop.load_task("sun397", coop_root)
    base, novel = protocol.base_novel(task)
    assert base.classnames == task.classnames[:2] and novel.classnames == task.classnames[2:]
    assert (len(base.train), len(base.val), len(base.test)) == (6, 4, 4)
    assert sorted(set(novel.test.labels.tolist())) == [0, 1]  # relabelled 0..m-1
    full_train, full_val = protocol.few_shot_splits(task, 2, seed=3)
    base_train, base_val = protocol.few_shot_splits(base, 2, seed=3)
    keep = [i for i, y in enumerate(full_train.labels) if y < 2]
    assert [str(full_train.images[i]) for i in keep] == [str(p) for p in base_train.images]
    assert [str(p) for p, y in zip(full_val.images, full_val.labels) if y < 2] == [str(p) for p in base_val.images]
    n = len(task.classnames)
    assert len(base.classnames) == math.ceil(n / 2)


def _runner(tiny_vit, **kw):  # noqa: ANN001, ANN202
    return CellRunner(tiny_vit, lambda name: {"epochs": "1"} if name == "coop" else {}, **kw)


def test_cross_dataset_and_domain_generalisation(tiny_vit, coop_root, monkeypatch):
    monkeypatch.setenv(coop.ENV, str(coop_root))
    runner = _runner(tiny_vit)
    cross, _, _ = runner.measure(Cell("zsclip", "coop:imagenet", "cross-dataset", 0, 1, "t", "w"))
    assert list(cross["targets"]) == [f"coop:{d}" for d in coop.dataset_ids()[1:11]]
    assert cross["targets"] == cross["zero_shot_targets"]  # zero-shot CLIP is its own reference
    assert cross["target_mean"] == pytest.approx(np.mean(list(cross["targets"].values())))
    assert cross["missing_targets"] == {}
    dg, _, _ = runner.measure(Cell("zsclip", "coop:imagenet", "domain-generalisation", 0, 1, "t", "w"))
    assert list(dg["targets"]) == ["coop:imagenetv2", "coop:imagenet_sketch", "coop:imagenet_a", "coop:imagenet_r"]
    # A trained method keeps its tensors while its label set switches per target.
    lp, method, report = runner.measure(Cell("coop", "coop:imagenet", "domain-generalisation", 1, 1, "t", "w"))
    assert report is not None and method.classnames == coop.load_task("imagenet", coop_root).classnames
    assert set(lp["targets"]) == set(dg["targets"])


def test_a_missing_target_is_skipped_and_listed(tiny_vit, coop_root, tmp_path, monkeypatch, capsys):
    for name in ("imagenet", "imagenetv2", "imagenet-sketch"):
        shutil.copytree(coop_root / name, tmp_path / name)
    monkeypatch.setenv(coop.ENV, str(tmp_path))
    dg, _, _ = _runner(tiny_vit).measure(Cell("zsclip", "coop:imagenet", "domain-generalisation", 0, 1, "t", "w"))
    assert list(dg["targets"]) == ["coop:imagenetv2", "coop:imagenet_sketch"]
    assert dg["missing_targets"] == {"coop:imagenet_a": str(tmp_path / "imagenet-adversarial"),
                                     "coop:imagenet_r": str(tmp_path / "imagenet-rendition")}
    assert f"coop:imagenet_a skipped: {tmp_path / 'imagenet-adversarial'}" in capsys.readouterr().err


def test_on_bad_image_skip_lists_the_skipped_paths(tiny_vit, coop_root, tmp_path, monkeypatch):
    shutil.copytree(coop_root / "dtd", tmp_path / "dtd")
    monkeypatch.setenv(coop.ENV, str(tmp_path))
    bad = tmp_path / "dtd" / "images" / "braided" / "braided_0007.jpg"  # a test image
    bad.write_bytes(b"not an image")
    cell = Cell("zsclip", "coop:dtd", "few-shot", 0, 1, "t", "w")
    with pytest.raises(UnreadableImage) as err:
        _runner(tiny_vit).run(cell)
    assert err.value.path == str(bad)
    runner = _runner(tiny_vit, on_bad_image="skip")
    row = runner.run(cell)
    assert row["skipped_images"] == [str(bad)] and 0.0 <= row["accuracy"] <= 1.0
    full = coop.load_task("dtd", tmp_path)
    assert len(runner._task("coop:dtd").test) == len(full.test) - 1
    other = runner.run(Cell("zsclip", "coop:dtd", "base-to-novel", 0, 1, "t", "w"))
    assert other["skipped_images"] == [str(bad)]  # known from before: skipped at once


def test_test_only_datasets_fit_only_the_transfer_protocols(coop_root, monkeypatch):
    from vlmeft.bench.plan import task_fits

    monkeypatch.setenv(coop.ENV, str(coop_root))
    assert task_fits("coop:imagenet", "cross-dataset") and task_fits("coop:imagenet", "domain-generalisation")
    assert not task_fits("coop:dtd", "cross-dataset")
    for protocol_name in ("few-shot", "base-to-novel", "cross-dataset", "domain-generalisation"):
        assert not task_fits("coop:imagenet_a", protocol_name)
    assert task_fits("coop:dtd", "few-shot") and task_fits("coop:dtd", "base-to-novel")
    assert not task_fits("coop:dtd", "retrieval") and not task_fits("coop:dtd", "cross-domain")
