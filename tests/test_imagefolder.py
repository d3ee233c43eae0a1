"""`imagefolder:PATH` tasks: layouts, split files, templates, and errors that name files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vlmeft.data.imagefolder import load_imagefolder_task
from vlmeft.data.loading import Preprocess, load_batch
from vlmeft.errors import VlmeftError

COLOURS = {"red_apple": (220, 30, 30), "blue_sky": (30, 60, 220), "green_leaf": (30, 200, 40)}


def _write_images(folder: Path, colour, n: int, size=(40, 30)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        arr = np.zeros((size[1], size[0], 3), dtype=np.uint8) + np.array(colour, dtype=np.uint8)
        path = folder / f"img{i}.png"
        Image.fromarray(arr).save(path)
        paths.append(path)
    return paths


@pytest.fixture()
def class_folders(tmp_path):
    for name, colour in COLOURS.items():
        _write_images(tmp_path / name, colour, 10)
    (tmp_path / "notes.txt").write_text("ignored")
    return tmp_path


def test_folder_per_class_layout(class_folders):
    task = load_imagefolder_task(class_folders, seed=0)
    assert task.classnames == ["blue sky", "green leaf", "red apple"]  # sorted folders, '_' -> ' '
    assert task.templates == ["a photo of a {}."]
    assert (len(task.train), len(task.val), len(task.test)) == (15, 6, 9)  # 50/20/30 per class
    for split in (task.train, task.val, task.test):
        assert sorted(set(split.labels.tolist())) == [0, 1, 2]
        for path, label in zip(split.images, split.labels):
            assert path.parent.name.replace("_", " ") == task.classnames[label]
    every = [p for s in (task.train, task.val, task.test) for p in s.images]
    assert len(set(every)) == 30  # disjoint splits
    again = load_imagefolder_task(class_folders, seed=0)
    assert again.train.images == task.train.images and again.train.key == task.train.key
    assert load_imagefolder_task(class_folders, seed=1).train.images != task.train.images


def test_images_load_as_backbone_tensors(class_folders, tiny_vit):
    task = load_imagefolder_task(class_folders)
    batch = load_batch(task.test, [0, 1], Preprocess.for_backbone(tiny_vit))
    assert batch.shape == (2, 3, 32, 32)  # non-square 40x30 resized and centre-cropped
    red = (np.array(COLOURS[task.classnames[task.test.labels[0]].replace(" ", "_")]) / 255 - np.array(tiny_vit.mean))
    np.testing.assert_allclose(batch[0, :, 16, 16].numpy(), red / np.array(tiny_vit.std), atol=1e-3)


def test_key_changes_when_files_change(class_folders):
    before = load_imagefolder_task(class_folders).test.key
    _write_images(class_folders / "red_apple", (0, 0, 0), 11)  # overwrites img0..9 and adds img10
    assert load_imagefolder_task(class_folders).test.key != before


def test_templates_file(class_folders):
    (class_folders / "templates.txt").write_text("# comment\na photo of a {}.\na blurry {}.\n")
    assert load_imagefolder_task(class_folders).templates == ["a photo of a {}.", "a blurry {}."]
    (class_folders / "templates.txt").write_text("a photo\n")
    with pytest.raises(VlmeftError, match=r"templates.txt:1"):
        load_imagefolder_task(class_folders)


def test_split_folders_layout(tmp_path):
    for name, colour in COLOURS.items():
        _write_images(tmp_path / "train" / name, colour, 5)
        _write_images(tmp_path / "test" / name, colour, 3)
    task = load_imagefolder_task(tmp_path)
    assert len(task.test) == 9 and len(task.train) + len(task.val) == 15 and len(task.val) == 3
    _write_images(tmp_path / "val" / "blue_sky", (0, 0, 0), 2)
    with pytest.raises(VlmeftError, match="class folder 'green_leaf' is missing"):
        load_imagefolder_task(tmp_path)


def test_coop_split_file(tmp_path):
    entries = {}
    for label, (name, colour) in enumerate(sorted(COLOURS.items())):
        paths = _write_images(tmp_path / "images" / name, colour, 4)
        entries[name] = [[str(p.relative_to(tmp_path / "images")), label, name.replace("_", " ")] for p in paths]
    split = {part: [e for name in sorted(entries) for e in entries[name][sl]]
             for part, sl in (("train", slice(0, 2)), ("val", slice(2, 3)), ("test", slice(3, 4)))}
    (tmp_path / "split_zhou_Fruit.json").write_text(json.dumps(split))
    task = load_imagefolder_task(tmp_path)
    assert task.classnames == ["blue sky", "green leaf", "red apple"]
    assert (len(task.train), len(task.val), len(task.test)) == (6, 3, 3)
    assert all(p.is_file() for p in task.train.images)
    assert task.train.images[0].parent.parent == tmp_path / "images"


@pytest.mark.parametrize("bad,match", [
    ({"train": [["a.png", 0]], "val": [["a.png", 0, "a"]], "test": [["a.png", 0, "a"]]}, r"train\[0\]"),
    ({"train": [["a.png", 0, "a"], ["b.png", 0, "b"]], "val": [["a.png", 0, "a"]], "test": [["a.png", 0, "a"]]},
     "label 0 is 'b'"),
    ({"train": [], "val": [], "test": []}, "'train' must be a non-empty list"),
])
def test_bad_split_file_names_the_entry(tmp_path, bad, match):
    (tmp_path / "split_zhou_X.json").write_text(json.dumps(bad))
    with pytest.raises(VlmeftError, match=match) as info:
        load_imagefolder_task(tmp_path)
    assert "split_zhou_X.json" in str(info.value)


def test_missing_and_corrupted_images_name_the_file(tmp_path, tiny_vit):
    paths = _write_images(tmp_path / "images" / "a", (1, 2, 3), 2)
    split = {"train": [["a/img0.png", 0, "a"], ["a/gone.png", 0, "a"]], "val": [["a/img0.png", 0, "a"]],
             "test": [["a/img1.png", 0, "a"]]}
    (tmp_path / "split_zhou_X.json").write_text(json.dumps(split))
    task = load_imagefolder_task(tmp_path)
    prep = Preprocess.for_backbone(tiny_vit)
    with pytest.raises(VlmeftError, match="does not exist") as info:
        load_batch(task.train, [0, 1], prep)
    assert "gone.png" in str(info.value)
    paths[1].write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    with pytest.raises(VlmeftError, match="cannot read image") as info:
        load_batch(task.test, [0], prep)
    assert str(paths[1]) in str(info.value)


def test_missing_folder_and_too_few_classes(tmp_path):
    with pytest.raises(VlmeftError, match="does not exist"):
        load_imagefolder_task(tmp_path / "nope")
    _write_images(tmp_path / "only", (0, 0, 0), 3)
    with pytest.raises(VlmeftError, match="two class folders"):
        load_imagefolder_task(tmp_path)


def test_get_task_routes_imagefolder(class_folders):
    from vlmeft.data.tasks import get_task

    task = get_task(f"imagefolder:{class_folders}")
    assert task.classnames == ["blue sky", "green leaf", "red apple"]
