"""The CoOp dataset readers on a miniature fabricated copy of each layout (no download):
paths, class names (with the official cleaning), templates, split sizes, bad input."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from coop_layouts import A_PRESENT, EXPECTED, IMAGENET, R_PRESENT, classnames_lines

from vlmeft.cli import main
from vlmeft.data import coop
from vlmeft.errors import DatasetMissing, VlmeftError

A_DIGEST, R_DIGEST = "9826a24166e74ce6", "a6a0729f7a992302"


def test_fifteen_readers_in_the_papers_order():
    assert coop.dataset_ids() == ["imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101",
                                  "fgvc_aircraft", "sun397", "dtd", "eurosat", "ucf101", "imagenetv2", "imagenet_sketch",
                                  "imagenet_a", "imagenet_r"]
    # One module per dataset, each holding its reader.
    here = Path(coop.__file__).parent
    assert sorted(p.stem for p in here.glob("[!_]*.py")) == sorted(coop.dataset_ids())


@pytest.mark.parametrize("dataset", sorted(EXPECTED))
def test_reader_classnames_template_and_sizes(coop_root, dataset):
    task = coop.load_task(dataset, coop_root)
    want = EXPECTED[dataset]
    assert task.name == f"coop:{dataset}"
    assert task.classnames == want["classnames"]
    assert (len(task.train), len(task.val), len(task.test)) == want["sizes"]
    assert task.templates == [want["template"]]
    for split in (task.train, task.val, task.test):
        assert all(Path(p).is_file() for p in split.images)
        assert sorted(set(split.labels.tolist())) == [0, 1, 2, 3]
    assert task.sampler is not None and not task.source


def test_split_paths_are_relative_to_each_datasets_image_folder(coop_root):
    first = {d: Path(coop.load_task(d, coop_root).train.images[0]).relative_to(coop_root).as_posix()
             for d in EXPECTED}
    assert first["caltech101"].startswith("caltech-101/101_ObjectCategories/Faces/")
    assert first["oxford_pets"].startswith("oxford_pets/images/Abyssinian_")
    assert first["stanford_cars"].startswith("stanford_cars/cars_train/")
    assert first["oxford_flowers"].startswith("oxford_flowers/jpg/image_")
    assert first["food101"].startswith("food-101/images/apple_pie/")
    assert first["fgvc_aircraft"].startswith("fgvc_aircraft/images/")
    assert first["sun397"].startswith("sun397/SUN397/a/abbey/")
    assert first["dtd"].startswith("dtd/images/banded/")
    assert first["eurosat"].startswith("eurosat/2750/AnnualCrop/")
    assert first["ucf101"].startswith("ucf101/UCF-101-midframes/Apply_Eye_Makeup/")
    assert first["imagenet"].startswith("imagenet/images/train/n01440764/")
    test = coop.load_task("stanford_cars", coop_root).test.images[0]
    assert Path(test).relative_to(coop_root).as_posix().startswith("stanford_cars/cars_test/")


def test_imagenet_tests_on_val_and_has_the_transfer_targets(coop_root):
    task = coop.load_task("imagenet", coop_root)
    assert all("/images/val/" in str(p) for p in task.test.images)
    assert task.targets["cross-dataset"] == tuple(f"coop:{d}" for d in coop.dataset_ids()[1:11])
    assert task.targets["domain-generalisation"] == ("coop:imagenetv2", "coop:imagenet_sketch", "coop:imagenet_a",
                                                     "coop:imagenet_r")
    assert all(not coop.load_task(d, coop_root).targets for d in coop.dataset_ids()[1:])


def test_imagenet_variants_are_test_only_with_their_class_sets(coop_root):
    lines = classnames_lines()
    v2 = coop.load_task("imagenetv2", coop_root)
    assert v2.source == "coop:imagenet" and v2.sampler is None
    assert len(v2.classnames) == len(lines)  # folder i = line i of classnames.txt
    assert {Path(p).parent.name for p in v2.test.images} == {"0", "1", "2"}
    assert all(int(Path(p).parent.name) == y for p, y in zip(v2.test.images, v2.test.labels))
    sketch = coop.load_task("imagenet_sketch", coop_root)
    assert sketch.classnames == [IMAGENET[w] for w in sorted(IMAGENET)]  # sorted wnid folders
    assert [Path(p).suffix for p in sketch.test.images][:1] == [".png"]
    here = Path(coop.__file__).parent
    for dataset, present, wnids_file in (("imagenet_a", A_PRESENT, "imagenet_a_wnids.txt"),
                                         ("imagenet_r", R_PRESENT, "imagenet_r_wnids.txt")):
        task = coop.load_task(dataset, coop_root)
        wnids = (here / wnids_file).read_text().split()
        assert len(wnids) == 200 == len(set(wnids)) == len(task.classnames) and wnids == sorted(wnids)
        names = dict(line.split(" ", 1) for line in lines)
        assert task.classnames == [names[w] for w in wnids]
        for path, label in zip(task.test.images, task.test.labels):
            assert wnids[label] == Path(path).parent.name in present  # README.txt is not a class
        assert "3 of the 200 class folders present" in task.description


def test_the_200_class_subsets_match_the_official_lists():
    here = Path(coop.__file__).parent
    a = (here / "imagenet_a_wnids.txt").read_text().split()
    r = (here / "imagenet_r_wnids.txt").read_text().split()
    assert a[:3] == ["n01498041", "n01531178", "n01534433"] and a[-1] == "n12267677"
    assert r[:3] == ["n01443537", "n01484850", "n01494475"] and r[-1] == "n12267677"
    assert len(set(a) & set(r)) == 86  # the two official subsets share 86 classes
    # Pinned to the lists extracted from hendrycks/natural-adv-examples eval.py (0777070:
    # the wnids of thousand_k_to_200, ImageNet order) and hendrycks/imagenet-r eval.py
    # (3131cac: imagenet_r_wnids, sorted).
    digest = {n: hashlib.sha256((here / n).read_bytes()).hexdigest()[:16]
              for n in ("imagenet_a_wnids.txt", "imagenet_r_wnids.txt")}
    assert digest == {"imagenet_a_wnids.txt": A_DIGEST, "imagenet_r_wnids.txt": R_DIGEST}


def test_missing_dataset_names_where_it_looked(tmp_path):
    with pytest.raises(DatasetMissing) as err:
        coop.load_task("dtd", tmp_path)
    assert err.value.where == str(tmp_path / "dtd") and "DescribableTextures not found" in str(err.value)


def test_unknown_dataset_and_missing_root(tmp_path, monkeypatch):
    with pytest.raises(VlmeftError, match="unknown CoOp dataset 'oxford_pet' .*did you mean oxford_pets"):
        coop.load_task("oxford_pet", tmp_path)
    monkeypatch.delenv(coop.ENV, raising=False)
    with pytest.raises(VlmeftError, match="pass --data-root DIR or set VLMEFT_DATA"):
        coop.load_task("dtd")


# ------------------------------------------------------------------------ bad input
def _copy(coop_root: Path, tmp_path: Path, folder: str) -> Path:
    shutil.copytree(coop_root / folder, tmp_path / folder)
    return tmp_path / folder


def _edit_split(path: Path, edit) -> None:  # noqa: ANN001
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def _run_error(capsys, root: Path, dataset: str) -> str:
    code = main(["run", "zsclip", "--task", f"coop:{dataset}", "--data-root", str(root), "--shots", "1",
                 "--backbone", "vlmeft-tiny-vit", "--pretrained", "none", "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_missing_split_file(capsys, coop_root, tmp_path):
    ds = _copy(coop_root, tmp_path, "caltech-101")
    (ds / "split_zhou_Caltech101.json").unlink()
    err = _run_error(capsys, tmp_path, "caltech101")
    assert str(ds / "split_zhou_Caltech101.json") in err and "split file is missing" in err


def test_split_entry_whose_image_is_missing(capsys, coop_root, tmp_path):
    ds = _copy(coop_root, tmp_path, "dtd")
    gone = ds / "images" / "blotchy" / "blotchy_0002.jpg"
    gone.unlink()
    err = _run_error(capsys, tmp_path, "dtd")
    assert f"{ds / 'split_zhou_DescribableTextures.json'} train[" in err and f"image {gone} does not exist" in err


def test_label_index_out_of_range(capsys, coop_root, tmp_path):
    ds = _copy(coop_root, tmp_path, "food-101")
    split = ds / "split_zhou_Food101.json"
    _edit_split(split, lambda d: d["test"].__setitem__(0, [d["test"][0][0], 7, "made up"]))
    err = _run_error(capsys, tmp_path, "food101")
    assert f"{split} test[0]" in err and "label 7 is out of range 0..4 (5 classes)" in err


def test_class_name_mismatch_between_split_and_folder(capsys, coop_root, tmp_path):
    ds = _copy(coop_root, tmp_path, "eurosat")
    split = ds / "split_zhou_EuroSAT.json"
    # An image of the Forest folder filed under the class "Sea or Lake".
    _edit_split(split, lambda d: d["val"].__setitem__(2, ["Forest/Forest_5.jpg", 3, "Sea or Lake"]))
    err = _run_error(capsys, tmp_path, "eurosat")
    assert f"{split} val[2]" in err and "Forest/Forest_5.jpg belongs to 'Forest'" in err


def test_class_name_mismatch_in_aircraft_lists_and_imagenet_folders(capsys, coop_root, tmp_path):
    ds = _copy(coop_root, tmp_path, "fgvc_aircraft")
    lists = ds / "images_variant_val.txt"
    lists.write_text(lists.read_text().replace("A300B4", "A300B5", 1))
    err = _run_error(capsys, tmp_path, "fgvc_aircraft")
    assert f"{lists}:3" in err and "variant 'A300B5' is not in variants.txt" in err
    ds = _copy(coop_root, tmp_path, "imagenet")
    (ds / "images" / "val" / "n09999999").mkdir()
    err = _run_error(capsys, tmp_path, "imagenet")
    assert str(ds / "images" / "val" / "n09999999") in err and "not a train class folder" in err


def test_variant_folders_outside_their_class_sets(capsys, coop_root, tmp_path):
    ds = _copy(coop_root, tmp_path, "imagenet-adversarial")
    (ds / "imagenet-a" / "n01440764").mkdir()  # tench: an ImageNet class, not one of ImageNet-A's 200
    with pytest.raises(VlmeftError, match="'n01440764' is not one of the 200 ImageNetA classes"):
        coop.load_task("imagenet_a", tmp_path)
    ds = _copy(coop_root, tmp_path, "imagenetv2")
    (ds / "imagenetv2-matched-frequency-format-val" / "99999").mkdir()
    with pytest.raises(VlmeftError, match="folder '99999' is not a label index 0..314"):
        coop.load_task("imagenetv2", tmp_path)


def test_truncated_image_is_named(capsys, coop_root, tmp_path):
    ds = _copy(coop_root, tmp_path, "ucf101")
    bad = sorted((ds / "UCF-101-midframes" / "Archery").glob("*.jpg"))[-1]  # a test image
    bad.write_bytes(bad.read_bytes()[:60])
    err = _run_error(capsys, tmp_path, "ucf101")
    assert str(bad) in err and "cannot read image" in err


def test_a_broken_json_split_is_named(coop_root, tmp_path):
    ds = _copy(coop_root, tmp_path, "oxford_flowers")
    (ds / "split_zhou_OxfordFlowers.json").write_text("{not json")
    with pytest.raises(VlmeftError, match="invalid JSON") as err:
        coop.load_task("oxford_flowers", tmp_path)
    assert err.value.where == str(ds / "split_zhou_OxfordFlowers.json")


def test_imagefolder_finds_the_image_folder_of_coop_split_files(coop_root):
    from vlmeft.data.imagefolder import load_imagefolder_task

    for folder in ("caltech-101", "eurosat", "ucf101", "sun397", "oxford_flowers"):
        task = load_imagefolder_task(coop_root / folder)
        assert len(task.train) == 12 and all(Path(p).is_file() for p in task.test.images), folder
