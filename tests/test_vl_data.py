"""Generative tasks: scoring (VQA normalisation and accuracy, CIDEr / BLEU-4 from
pycocoevalcap), few-shot draws, the world's VQA and captioning tasks and the COCO-format
readers with their one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from vlmeft.cli import main
from vlmeft.data import coco_vl, vl
from vlmeft.data.vl import VLExample, VLSplit
from vlmeft.errors import VlmeftError


def test_vqa_normalisation_and_accuracy():
    assert vl.normalise_answer("Two.") == "2" and vl.normalise_answer("the Red ") == "red"
    assert vl.normalise_answer("a dog, and a cat!") == "dog and cat"
    one = VLExample("q?", ("red",), "color")
    assert vl.vqa_accuracy(["Red."], [one]) == 1.0 and vl.vqa_accuracy(["blue"], [one]) == 0.0
    ten = VLExample("q?", ("2",) * 2 + ("3",) * 8, "count")  # VQA v2: min(#humans / 3, 1)
    assert vl.vqa_accuracy(["two"], [ten]) == pytest.approx(2 / 3) and vl.vqa_accuracy(["3"], [ten]) == 1.0


def test_caption_scores_come_from_pycocoevalcap_and_rank_captions():
    refs = [VLExample("", ("a small red circle on the left", "a red circle"), "object"),
            VLExample("", ("a blue square and a green star", "a green star and a blue square"), "scene")]
    exact = vl.caption_scores(["a small red circle on the left", "a blue square and a green star"], refs)
    partial = vl.caption_scores(["a red circle", "a blue square"], refs)
    wrong = vl.caption_scores(["the digit 7", "the digit 7"], refs)
    assert exact["bleu4"] == pytest.approx(1.0, abs=1e-6)
    assert exact["cider"] > partial["cider"] > wrong["cider"] >= 0.0
    assert vl.caption_tokens("A Red, circle!") == "a red circle"  # our tokenisation (no Java PTB tokenizer)


def _split(n: int, groups=("a", "b")) -> VLSplit:
    ex = [VLExample("q?", (g,), g, f"{g}{i}") for g in groups for i in range(n)]
    return VLSplit(np.zeros((len(ex), 4, 4, 3), np.uint8), ex, "toy")


def test_few_shot_draws_k_per_group_with_a_local_seed():
    split = _split(10)
    a = vl.few_shot(split, 3, seed=1, tag="s")
    assert sorted(e.group for e in a.examples) == ["a"] * 3 + ["b"] * 3
    assert [e.id for e in a.examples] == [e.id for e in vl.few_shot(split, 3, seed=1, tag="s").examples]
    assert [e.id for e in a.examples] != [e.id for e in vl.few_shot(split, 3, seed=2, tag="s").examples]
    assert len(vl.few_shot(split, 100, seed=1, tag="s")) == 20  # more than a group holds: all of it
    task = vl.VLTask("t", "vqa", split, _split(2), _split(2))
    assert vl.is_full(task, 10) and not vl.is_full(task, 9)


@pytest.fixture(scope="module")
def world_vqa():
    return vl.get_vl_task("world-vqa")


def test_world_vqa_covers_five_question_types_in_both_phrasings(world_vqa):
    from vlmeft.world.qa import PHRASINGS, answer_vocabulary

    assert world_vqa.groups == sorted(["color", "shape", "count", "position", "digit"])
    assert len(world_vqa.test) == 5 * vl.VQA_SIZES[2] and set(world_vqa.shifted) == {"checkered", "noisy"}
    answers = answer_vocabulary()
    held_out = {q.split("{")[0] for forms in PHRASINGS["held-out"].values() for q in forms}
    asked = [e.prompt for e in world_vqa.test.examples]
    assert any(any(q.startswith(h) for h in held_out) for q in asked)  # some wordings pretraining never used
    for e in world_vqa.train.examples:
        assert e.targets[0] in answers[e.group], e
    # Most-common-answer baseline: above chance, well below perfect.
    base = vl.most_common_answer(world_vqa.train, world_vqa.test)
    assert 0.1 < base["per_type"] < 0.5


def test_world_captions_hold_five_complete_references(world_vqa):
    task = vl.get_vl_task("world-captions")
    assert task.groups == ["digit", "object", "scene"] and all(len(e.targets) == 5 for e in task.test.examples)
    obj = next(e for e in task.test.examples if e.group == "object")
    assert any(size in obj.targets[0] for size in ("small", "medium", "large"))


# ------------------------------------------------------------------- readers
def _image(path):
    Image.fromarray(np.full((8, 8, 3), 128, np.uint8)).save(path)


@pytest.fixture()
def captions_file(tmp_path):
    for i in range(10):
        _image(tmp_path / f"{i}.png")
    doc = {"images": [{"id": i, "file_name": f"{i}.png", "split": ["train", "val", "test"][i % 3]} for i in range(10)],
           "annotations": [{"image_id": i, "caption": f"a red circle number {i}"} for i in range(10)]
           + [{"image_id": 0, "caption": "a second caption"}]}
    path = tmp_path / "captions.json"
    path.write_text(json.dumps(doc))
    return path, doc


def test_captions_json_reads_a_coco_file(captions_file):
    path, _ = captions_file
    task = coco_vl.load_captions(path)
    assert task.kind == "captions" and len(task.train) + len(task.val) + len(task.test) == 10
    first = next(e for e in task.train.examples if e.id == "image 0")
    assert first.targets == ("a red circle number 0", "a second caption")


@pytest.fixture()
def vqa_folder(tmp_path):
    for i in range(6):
        _image(tmp_path / f"{i}.png")
    images = {"images": [{"id": i, "file_name": f"{i}.png", "split": ["train", "val", "test"][i % 3]} for i in range(6)]}
    questions = {"questions": [{"question_id": 10 + i, "image_id": i, "question": "what color?"} for i in range(6)]}
    annotations = {"annotations": [{"question_id": 10 + i, "image_id": i, "answer_type": "other",
                                    "answers": [{"answer": "red"}] * 10} for i in range(6)]}
    for name, doc in (("images", images), ("questions", questions), ("annotations", annotations)):
        (tmp_path / f"{name}.json").write_text(json.dumps(doc))
    return tmp_path


def test_vqa_json_reads_a_vqa_v2_folder(vqa_folder):
    task = coco_vl.load_vqa(vqa_folder)
    assert task.kind == "vqa" and task.groups == ["other"] and len(task.test.examples[0].targets) == 10


@pytest.mark.parametrize("damage, message", [
    (lambda d: d["annotations"][3].pop("caption"), "annotations[3]: 'caption' is missing"),
    (lambda d: d["annotations"][2].update(caption=""), "annotations[2]: 'caption' is empty"),
    (lambda d: d["annotations"][1].update(image_id=99), "annotations[1]: image_id 99 is not among"),
    (lambda d: d["images"][4].update(split="holdout"), "images[4]: 'split' must be one of"),
    (lambda d: d.pop("images"), "expected a top-level 'images' list"),
])
def test_a_malformed_caption_file_names_the_file_and_entry(captions_file, damage, message):
    path, doc = captions_file
    damage(doc)
    path.write_text(json.dumps(doc))
    with pytest.raises(VlmeftError) as err:
        coco_vl.load_captions(path)
    assert message in f"{err.value.where}: {err.value}" and str(path) in err.value.where


def test_a_malformed_vqa_file_exits_2_naming_file_and_entry(vqa_folder, capsys):
    doc = json.loads((vqa_folder / "annotations.json").read_text())
    doc["annotations"][2]["answers"] = []
    (vqa_folder / "annotations.json").write_text(json.dumps(doc))
    code = main(["run", "coca", "--task", f"vqa-json:{vqa_folder}", "--backbone", "vlmeft-tiny-coca",
                 "--pretrained", "none", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "annotations.json: annotations[2]" in err and "'answers' is empty" in err
    (vqa_folder / "questions.json").write_text("{not json")
    assert main(["run", "coca", "--task", f"vqa-json:{vqa_folder}", "--no-progress"]) == 2
    assert "questions.json" in capsys.readouterr().err
