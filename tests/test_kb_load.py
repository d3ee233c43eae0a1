"""Loading a knowledge base: the API, the cross-record checks, raise-first vs collect-all."""

from __future__ import annotations

import pytest

from kb_helpers import GOOD, make_kb, record_text, write_record
from vlmeft.errors import VlmeftError
from vlmeft.kb.load import KnowledgeBase, check_kb, load_kb, load_record


@pytest.fixture
def kb_dir(tmp_path):
    return make_kb(tmp_path)


def test_fixture_kb_api(kb_dir):
    kb = load_kb(kb_dir)
    assert isinstance(kb, KnowledgeBase)
    assert list(kb.methods) == ["alpha-prompt", "beta-adapter", "gamma-probe"]
    assert kb.survey.doi == "10.1016/j.cag.2024.01.012"
    assert [f.id for f in kb.categories.families] == ["prompt", "adapter"]
    assert len(kb.leaves) == 9 and kb.leaves is kb.categories.leaves
    assert [r.id for r in kb.members("prompt")] == ["alpha-prompt"]
    assert [r.id for r in kb.members("prompt.textual")] == ["alpha-prompt"]
    assert [r.id for r in kb.members("adapter.unimodal")] == ["beta-adapter"]
    assert kb.members("prompt.visual") == []
    assert [r.id for r in kb.uncategorised()] == ["gamma-probe"]
    assert kb.categories.leaf("adapter.unimodal").signature.crossmodal_dependence == "none"
    assert kb.categories.leaf("prompt.multimodal.coupled").signature.vision_prompt_grad_wrt_text_prompt == "nonzero"
    assert [n.id for n in kb.categories.path("prompt.visual.token")] == ["prompt", "prompt.visual", "prompt.visual.token"]
    assert kb.categories.parent("prompt.visual.token") == "prompt.visual"
    assert "image-text-retrieval" in kb.tasks and kb.tasks["vqa"].kind == "vision-language"
    assert kb.paradigms["prompt"].family == "prompt" and kb.paradigms["linear-probe"].family is None
    assert set(kb.topics) >= {"stability", "social-ethics", "future-directions"}
    assert kb.sources["alpha-prompt"].endswith("alpha-prompt.yaml")


def test_lookup_by_alias_and_suggestions(kb_dir):
    kb = load_kb(kb_dir)
    assert kb.get("ALPHAPROMPT").id == "alpha-prompt"
    assert kb.resolve("nope") is None
    with pytest.raises(VlmeftError, match=r"did you mean alpha-prompt"):
        kb.get("alpha-promt")
    with pytest.raises(VlmeftError, match=r"unknown category 'prompt.visul'.*prompt.visual"):
        kb.members("prompt.visul")
    with pytest.raises(VlmeftError, match="not a leaf"):
        kb.categories.leaf("prompt.visual")


def test_shipped_is_default_and_package_data():
    from importlib.resources import files

    assert (files("vlmeft.taxonomy") / "categories.yaml").is_file()


def _errors(kb_dir, *extra):
    kb, errors = check_kb(kb_dir, extra)
    return [str(e) for e in errors]


def test_cross_record_checks(kb_dir, tmp_path):
    new = tmp_path / "new"
    new.mkdir()
    cases = {
        "dup-alias": (record_text("dup-alias", aliases="aliases: [alphaprompt]"), "duplicate alias 'alphaprompt'"),
        "alias-is-id": (record_text("alias-is-id", aliases="aliases: [Beta-Adapter]"), "already the id of 'beta-adapter'"),
        "same-arxiv": (record_text("same-arxiv", arxiv='arxiv: "2301.00001v3"'), "arxiv 2301.00001v3 is already used by 'alpha-prompt'"),
        "same-doi": (record_text("same-doi", doi="doi: 10.1234/JFS.2024.001"), "doi 10.1234/JFS.2024.001 is already used"),
        "bad-secondary": (record_text("bad-secondary", secondary_categories="secondary_categories: [prompt.visual]"), "'prompt.visual' is not a leaf"),
        "unknown-para": (record_text("unknown-para", paradigm="paradigm: prompting"), "unknown paradigm 'prompting'"),
        "baseline-with-cat": (record_text("baseline-with-cat", paradigm="paradigm: linear-probe"), "carry no category"),
        "adapter-in-prompt": (record_text("adapter-in-prompt", paradigm="paradigm: adapter"), "needs a category under 'adapter'"),
        "prompt-no-cat": (record_text("prompt-no-cat", category="", implementation="implementation: {id: linear-probe, fidelity: simplified}"), "needs a category under 'prompt', got none"),
        "wrong-folder": (record_text("wrong-folder", implementation="implementation: {id: maple, fidelity: faithful}"), "methods/prompt_multimodal_coupled/, not the record's category folder"),
        "unknown-task": (record_text("unknown-task", tasks="tasks: [vqa, captionning]"), "unknown task 'captionning' (did you mean captioning"),
    }
    for rid, (text, fragment) in cases.items():
        path = write_record(new, rid, text)
        errors = _errors(kb_dir, path)
        assert len(errors) == 1 and fragment in errors[0], (rid, errors)
        assert errors[0].startswith(str(path)) or f"{rid}.yaml:" in errors[0]


def test_shared_paper_allowed_with_same_title(kb_dir, tmp_path):
    path = write_record(tmp_path, "alpha-variant", record_text("alpha-variant", title='title: "alpha: a fixture prompt method for clip"', arxiv='arxiv: "2301.00001"'))
    assert _errors(kb_dir, path) == []


def test_id_must_match_stem(kb_dir, tmp_path):
    path = tmp_path / "other-name.yaml"
    path.write_text(record_text("some-id"))
    (errors,) = [_errors(kb_dir, path)]
    assert len(errors) == 1 and "must equal the file name stem 'other-name'" in errors[0] and ":1 field 'id'" in errors[0]


def test_validating_a_kb_file_itself_is_not_a_duplicate(kb_dir):
    assert _errors(kb_dir, kb_dir / "methods" / "alpha-prompt.yaml") == []


def test_collect_all_vs_raise_first(kb_dir):
    write_record(kb_dir / "methods", "two-a", record_text("two-a", year="year: 1900"))
    write_record(kb_dir / "methods", "two-b", record_text("two-b", tasks="tasks: [nope]"))
    write_record(kb_dir / "methods", "two-c", record_text("two-c", code="code: http://x.org"))
    errors = _errors(kb_dir)
    assert len(errors) == 3, errors
    assert any("two-a.yaml:6 field 'year'" in e for e in errors)
    assert any("two-b.yaml:10 field 'tasks[0]'" in e for e in errors)
    assert any("two-c.yaml:13 field 'code'" in e for e in errors)
    with pytest.raises(VlmeftError) as info:
        load_kb(kb_dir)
    assert str(info.value) in errors


def test_broken_base_files_are_reported(tmp_path):
    kb_dir = make_kb(tmp_path)
    (kb_dir / "tasks.yaml").write_text("tasks:\n  - id: vqa\n    name: VQA\n    kind: audio\n    description: x\n")
    (kb_dir / "survey.yaml").unlink()
    kb, errors = check_kb(kb_dir)
    assert kb is None
    text = "\n".join(map(str, errors))
    assert "tasks.yaml:4 field 'tasks[0].kind'" in text
    assert "survey.yaml: no such file" in text
    assert "unknown task" not in text  # records are not blamed for a broken tasks file


def test_duplicate_ids_in_base_files(tmp_path):
    kb_dir = make_kb(tmp_path)
    text = (kb_dir / "tasks.yaml").read_text()
    (kb_dir / "tasks.yaml").write_text(text + "  - id: vqa\n    name: Again\n    kind: vision\n    description: twice\n")
    with pytest.raises(VlmeftError, match="duplicate id\\(s\\): vqa"):
        load_kb(kb_dir)


def test_missing_directory(tmp_path):
    with pytest.raises(VlmeftError, match="taxonomy directory not found"):
        load_kb(tmp_path / "nope")


def test_load_record_alone():
    assert load_record(GOOD / "beta-adapter.yaml").authors[0] == "Van Der Berg, Anna"


def test_non_mapping_record(kb_dir):
    (kb_dir / "methods" / "listy.yaml").write_text("- a\n- b\n")
    errors = _errors(kb_dir)
    assert errors == [f"{kb_dir / 'methods' / 'listy.yaml'}:1: expected a mapping of fields at the top level, got list"]
