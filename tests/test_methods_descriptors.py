"""DCLIP, CuPL and WaffleCLIP: per-class prompts from language-model files, and the
embedded world's descriptors that stand in for them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vlmeft import registry
from vlmeft.cli import main
from vlmeft.data import descriptors as class_texts
from vlmeft.errors import VlmeftError
from vlmeft.world import descriptors as world

CLASSES = ["red circle", "blue square", "green triangle"]
TEMPLATES = ["a photo of a {}.", "a drawing of a {}."]
FILE = {"red circle": ["a round outline", "has no corners"], "blue square": ["four corners"],
        "green triangle": [], "unused": ["x"]}


def _write(tmp_path, data, name="d.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return str(path)


def _frozen(bb, texts: list[str]) -> torch.Tensor:
    return torch.cat([bb.encode_text(bb.tokenize([t]), normalize=True) for t in texts])


# -------------------------------------------------------------------- DCLIP
def test_which_clause_is_the_official_rule_with_its_quirk() -> None:
    from vlmeft.methods.prompt_textual_handcrafted.dclip import which_clause

    assert which_clause("a long tail") == "which is a long tail"
    assert which_clause("angular wings") == "which is angular wings"  # startswith('a'), as released
    assert which_clause("has stripes") == "which has stripes"
    assert which_clause("often brown") == "which often brown"
    assert which_clause("used for cutting") == "which is used for cutting"
    assert which_clause("black fur") == "which has black fur"


def test_dclip_score_is_the_mean_similarity_over_descriptor_sentences(tiny_vit, tmp_path) -> None:
    path = _write(tmp_path, FILE)
    m = registry.build("dclip", tiny_vit, CLASSES, TEMPLATES, {"descriptors": path}, recipe="paper")
    assert m.class_prompts() == [
        ["red circle, which is a round outline", "red circle, which has no corners"],
        ["blue square, which has four corners"],
        ["green triangle, which has "],  # an empty list becomes [""], as in the official code
    ]
    images = torch.randn(3, 3, tiny_vit.image_size, tiny_vit.image_size)
    with torch.no_grad():
        feats = tiny_vit.encode_image(images, normalize=True)
        expected = torch.stack([(feats @ _frozen(tiny_vit, p).t()).mean(dim=1) for p in m.class_prompts()], dim=1)
        got = m(images) / tiny_vit.logit_scale()
    assert torch.allclose(got, expected, atol=1e-5)
    # the text feature is the frozen ensemble's direction, the norm goes into the logits
    ens = F.normalize(_frozen(tiny_vit, m.class_prompts()[0]).mean(0), dim=-1)
    assert torch.allclose(m.text_features()[0], ens, atol=1e-6)


def test_dclip_settings_change_the_sentences(tiny_vit, tmp_path) -> None:
    path = _write(tmp_path, FILE)
    m = registry.build("dclip", tiny_vit, CLASSES[:1], TEMPLATES,
                       {"descriptors": path, "label_before": "a ", "modify": "false", "label_after": "."})
    assert m.class_prompts() == [["a red circle, a round outline.", "a red circle, has no corners."]]


@pytest.mark.parametrize(("data", "message", "where"), [
    ("{not json", "not valid JSON", ":1"),
    ('["a", "b"]', "expected a JSON object", ""),
    ({"red circle": "a round outline"}, "expected a list of strings", "entry 'red circle'"),
    ({"red circle": ["ok", 3]}, "item 1 is int", "entry 'red circle'"),
    ({"red circle": ["ok"]}, "no entry for class 'blue square'", ""),
])
def test_malformed_files_name_the_file_and_entry(tiny_vit, tmp_path, data, message, where) -> None:
    path = _write(tmp_path, data)
    # Built for placeholder names (the planner's probe) it reads nothing; the texts are
    # looked up, and checked, when the classifier is first needed.
    method = registry.build("dclip", tiny_vit, ["placeholder"], TEMPLATES, {"descriptors": path})
    method.set_classnames(CLASSES)
    with pytest.raises(VlmeftError, match=message) as err:
        method.text_features()
    assert err.value.where.startswith(path) and where in err.value.where
    with pytest.raises(VlmeftError, match="no such file"):
        registry.build("cupl", tiny_vit, CLASSES, TEMPLATES, {"prompts": str(tmp_path / "missing.json")}).text_features()


def test_a_malformed_file_is_one_line_and_exit_2_on_the_command_line(capsys, tmp_path) -> None:
    folder = tmp_path / "imgs"
    for name in ("red", "blue"):
        (folder / name).mkdir(parents=True)
        from PIL import Image

        for i in range(2):
            Image.fromarray(np.full((32, 32, 3), 40 * i, np.uint8)).save(folder / name / f"{i}.png")
    bad = _write(tmp_path, {"red": ["ok"], "blue": [1]})
    code = main(["run", "dclip", "--task", f"imagefolder:{folder}", "--shots", "1", "--backbone", "vlmeft-tiny-vit",
                 "--pretrained", "none", "--no-progress", "--set", f"descriptors={bad}"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.splitlines()[-1].startswith(f"error: {bad} entry 'blue'") and "Traceback" not in err


# --------------------------------------------------------------------- CuPL
def test_cupl_is_the_renormalised_ensemble_of_its_sentences(tiny_vit, tmp_path) -> None:
    sentences = {"red circle": ["A red circle is round.", "It has no corners."], "blue square": ["A square."],
                 "green triangle": []}
    path = _write(tmp_path, sentences)
    m = registry.build("cupl", tiny_vit, CLASSES, TEMPLATES, {"prompts": path}, recipe="paper")
    prompts = m.class_prompts()
    assert prompts[0] == sentences["red circle"] and prompts[1] == ["A square."]
    assert prompts[2] == [t.format("green triangle") for t in TEMPLATES]  # no sentence: its templates
    for c, p in enumerate(prompts):
        assert torch.allclose(m.text_features()[c], F.normalize(_frozen(tiny_vit, p).mean(0), dim=-1), atol=1e-6)
    images = torch.randn(2, 3, tiny_vit.image_size, tiny_vit.image_size)
    with torch.no_grad():
        plain = tiny_vit.logit_scale() * tiny_vit.encode_image(images, normalize=True) @ m.text_features().t()
        assert torch.allclose(m(images), plain, atol=1e-5)  # no per-class norm: CuPL re-normalises
    both = registry.build("cupl", tiny_vit, CLASSES, TEMPLATES, {"prompts": path, "use_templates": "true"})
    assert both.class_prompts()[0] == [t.format("red circle") for t in TEMPLATES] + sentences["red circle"]


# --------------------------------------------------------------- WaffleCLIP
def test_waffle_draw_is_shared_by_all_classes_and_seeded(tiny_vit, tmp_path) -> None:
    words = _write(tmp_path, ["alpha", "bravo", "charlie", "delta", "echo"], "words.json")
    desc = _write(tmp_path, {c: ["xyz qrs"] for c in CLASSES}, "desc.json")

    def build(seed, **kw):
        torch.manual_seed(seed)
        return registry.build("waffleclip", tiny_vit, CLASSES, TEMPLATES,
                              {"words": words, "descriptors": desc, "count": "3", **kw}, recipe="paper")

    first = build(0).class_prompts()
    assert first == build(0).class_prompts() and first != build(1).class_prompts()
    assert build(1, rep="0").class_prompts() == first  # rep pins the draw, whatever the run's seed
    assert [len(p) for p in first] == [6, 6, 6]
    stripped = [[s.replace(c, "CLASS") for s in p] for c, p in zip(CLASSES, first)]
    assert stripped[0] == stripped[1] == stripped[2]  # one draw, every class
    for i, sentence in enumerate(stripped[0]):
        assert sentence.startswith("A photo of a CLASS, which ") and sentence.endswith(".")
        noise = sentence.removeprefix("A photo of a CLASS, ").removesuffix(".")
        noise = noise.removeprefix("which is ").removeprefix("which has ")
        if i % 2 == 0:  # a random word: two words per name ("red circle"), each cut to 5 letters
            assert len(noise.split(" ")) == 2 and all(w in {"alpha", "bravo", "charl", "delta", "echo"}
                                                      for w in noise.split(" "))
        else:  # random characters from the descriptors' letters, in the shape of a class name
            groups = noise.split(", ")
            assert len(groups) == 2 and all(set(g) <= set("xyzqrs") and len(g) == len(groups[0]) for g in groups)
    concept = build(0, concept="shape").class_prompts()
    assert concept[0][0].startswith("A photo of a shape: a red circle, which ")


def test_waffle_word_list_errors(tiny_vit, tmp_path) -> None:
    for content, message in (("[1, 2]", "item 0"), ("", "empty"), ("[broken", "not valid JSON")):
        path = _write(tmp_path, content, "w.txt")
        with pytest.raises(VlmeftError, match=message):
            registry.build("waffleclip", tiny_vit, CLASSES, TEMPLATES, {"words": path}).text_features()
    with pytest.raises(VlmeftError, match="count"):
        registry.build("waffleclip", tiny_vit, CLASSES, TEMPLATES, {"count": "0"})


# ------------------------------------------------------------ world's texts
def test_the_shipped_world_files_are_the_generators_output() -> None:
    for task, names in world.task_classnames().items():
        for kind in world.KINDS:
            path = world.shipped_path(task, kind)
            assert path.read_text(encoding="utf-8") == world.render(kind, names), (
                f"{path.name} is stale: run python -m vlmeft.world.descriptors")
            table = class_texts.read(path)
            assert list(table) == names and all(table[n] for n in names)  # every class described


def test_world_descriptors_compose_by_word_and_refuse_foreign_label_sets() -> None:
    assert world.descriptors("red circle") == world.descriptors("red") + world.descriptors("circle")
    assert world.descriptors("7")[:2] == ["a handwritten seven", "the number seven"]
    assert world.sentences("square")[0] == "a square has four equal sides."
    assert class_texts.world("descriptors", ["black moon", "red"])[0] == []  # no world word: nothing
    with pytest.raises(VlmeftError, match="descriptors=PATH"):
        class_texts.world("descriptors", ["cat", "dog"])
    with pytest.raises(VlmeftError, match="prompts=PATH"):
        class_texts.world("sentences", ["cat", "dog"])


def test_class_prompt_means_handles_ragged_lists_and_matches_the_template_ensemble(tiny_vit) -> None:
    ragged = tiny_vit.class_prompt_means([["a", "b c"], ["d"]])
    assert ragged.shape == (2, tiny_vit.embed_dim)
    assert torch.allclose(ragged[1], _frozen(tiny_vit, ["d"])[0], atol=1e-6)
    uniform = [[t.format(c) for t in TEMPLATES] for c in CLASSES]
    assert torch.equal(F.normalize(tiny_vit.class_prompt_means(uniform), dim=-1),
                       tiny_vit.zero_shot_weights(CLASSES, TEMPLATES))
    with pytest.raises(VlmeftError, match="no prompt"):
        tiny_vit.class_prompt_means([["a"], []])


def test_a_waffle_checkpoint_keeps_its_draw(tiny_vit, tmp_path) -> None:
    from vlmeft.engine import checkpoint

    torch.manual_seed(5)
    m = registry.build("waffleclip", tiny_vit, CLASSES, TEMPLATES, {"count": "2"})
    checkpoint.save(m, tmp_path / "ckpt")
    torch.manual_seed(6)  # a process whose RNG would draw other strings
    loaded = checkpoint.load(tmp_path / "ckpt", tiny_vit, CLASSES, TEMPLATES)
    assert int(loaded.draw_seed) == 5 and loaded.class_prompts() == m.class_prompts()
