"""The registry: methods register themselves with a decorator, found by reading the
source (no import, no torch) and verified when imported; every declared property a test
or the engine relies on is checked for every registered method, not a hand-kept list."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from registered import classes, classifies, shipped

from vlmeft import registry
from vlmeft.errors import VlmeftError
from vlmeft.kb.load import load_kb
from vlmeft.kb.schema import ID_PATTERN

CLASSES = ["red square", "green circle", "blue triangle", "yellow star"]
TEMPLATES = ["a photo of a {}.", "a drawing of a {}."]


def test_listing_reads_the_source_and_never_imports_torch():
    code = ("import json, sys\nfrom vlmeft import registry\n"
            "out = {'names': registry.names(), 'refs': registry.CATEGORY_REFERENCE,"
            " 'where': registry.location('coop'), 'torch': 'torch' in sys.modules,"
            " 'methods': sorted(m for m in sys.modules if m.startswith('vlmeft.methods.'))}\n"
            "print(json.dumps(out))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert not out["torch"] and not out["methods"]
    assert out["names"] == registry.names() and "coop" in out["names"]
    assert out["refs"]["prompt.textual.learnable"] == "coop"
    assert out["where"] == ["prompt_textual_learnable.coop", "CoOp"]


def test_what_the_source_says_is_what_the_classes_say():
    kb = load_kb()
    for name in shipped():
        entry, cls = registry.entry(name), registry.get(name)
        assert cls.name == name and entry.category == cls.category, name
        assert entry.module == cls.__module__ and entry.class_name == cls.__qualname__
        record = kb.methods[name]  # every shipped method has its record (test_kb_shipped)
        assert (record.category or "baseline") == cls.category, name
        assert registry.category(name) == record.category


def test_the_id_pattern_is_the_schemas():
    assert registry._ID_RX.pattern == ID_PATTERN


def test_category_references_are_declared_by_the_methods():
    refs = registry.category_references()
    for leaf, name in refs.items():
        assert registry.entry(name).reference_for == leaf == registry.get(name).category
    assert set(refs) == set(load_kb().categories.leaf_ids)


# ------------------------------------------------------- discovery on a scratch tree
def _tree(tmp_path, files: dict[str, str]):
    root = tmp_path / "methods"
    for rel, text in {"__init__.py": "", "cat_a/__init__.py": "", **files}.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


@pytest.fixture
def scratch(monkeypatch):
    def use(root):
        monkeypatch.setattr(registry, "methods_root", lambda: root)
        registry.refresh()

    yield use
    monkeypatch.undo()
    registry.refresh()


GOOD = """
    from vlmeft import registry
    from vlmeft.method import Method

    class Base(Method):
        category = "prompt.visual.pixel"

    @registry.register(reference_for="prompt.visual.pixel")
    class One(Base):
        name = "one"
        category = "prompt.visual.pixel"

    @registry.register
    class Two(Base):
        '''Inherits its category from Base, read from the source.'''
        name = "two"

    class NotRegistered(Base):
        name = "three"
"""


def test_decorated_classes_are_found_with_inherited_categories(tmp_path, scratch):
    scratch(_tree(tmp_path, {"cat_a/mod.py": GOOD, "cat_a/helper.py": "X = 1\n", "loose/x.py": "@register\nclass A: name = 'loose'\n"}))
    found = registry.entries()
    assert {n for n, e in found.items() if e.origin == registry.BUILTIN} == {"one", "two"}
    assert found["two"].category == "prompt.visual.pixel" and found["two"].module == "vlmeft.methods.cat_a.mod"
    assert registry.category_references() == {"prompt.visual.pixel": "one"}
    assert registry.location("two") == ("cat_a.mod", "Two")
    # The module is not under vlmeft.methods' real path: get() imports, and fails loudly.
    with pytest.raises(ModuleNotFoundError):
        registry.get("one")


@pytest.mark.parametrize(("source", "message"), [
    ("@registry.register\nclass A:\n    category = 'x'\n", "sets no kebab-case `name"),
    ("@registry.register\nclass A:\n    name = 'Bad_Id'\n", "sets no kebab-case `name"),
    ("def broken(:\n", "syntax error"),
    ("@registry.register\nclass A:\n    name = 'one'\n", "id 'one' is already registered"),
    ("@registry.register(reference_for='prompt.visual.pixel')\nclass A:\n    name = 'a'\n"
     "    category = 'prompt.visual.pixel'\n", "already has a reference implementation"),
    ("@registry.register(reference_for='adapter.unimodal')\nclass A:\n    name = 'a'\n"
     "    category = 'prompt.visual.pixel'\n", "reference_for='adapter.unimodal' but the category"),
])
def test_a_bad_module_is_an_error_naming_its_file_and_line(tmp_path, scratch, source, message):
    scratch(_tree(tmp_path, {"cat_a/mod.py": GOOD, "cat_a/zz_bad.py": source}))
    with pytest.raises(registry.RegistryError, match=message) as err:
        registry.names()
    assert "zz_bad.py:" in str(err.value) and isinstance(err.value, VlmeftError)


def test_get_verifies_what_the_decorator_registered(monkeypatch):
    """A source that says one thing and an import that registers another is refused."""
    entry = registry.entry("zsclip")
    fake = registry.Entry("zsclip", entry.module, "SomethingElse", entry.category, None, registry.BUILTIN, "x.py", 1)
    monkeypatch.setitem(registry.entries(), "zsclip", fake)
    with pytest.raises(registry.RegistryError, match="registered .*ZSCLIP as 'zsclip', not SomethingElse"):
        registry.get("zsclip")


def test_a_module_that_fails_to_import_raises(monkeypatch):
    entry = registry.entry("zsclip")
    fake = registry.Entry("zsclip", "vlmeft.methods.no_such_folder.zsclip", "ZSCLIP", entry.category)
    monkeypatch.setitem(registry.entries(), "zsclip", fake)
    with pytest.raises(ModuleNotFoundError):
        registry.get("zsclip")
    assert not hasattr(registry, "available"), "nothing may turn an import failure into a skip"


# --------------------------------------------- declared properties, every method
@pytest.mark.parametrize("name", classes(lambda c: c.frozen_image_path and classifies(c)))
def test_frozen_image_path_is_honest(tiny_vit, name):
    """The engine caches frozen image features for methods that declare it: logits from
    those features must equal the live logits, in a trained (perturbed) state."""
    method = registry.build(name, tiny_vit, CLASSES, TEMPLATES, seed=0).eval()
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(6, 3, tiny_vit.image_size, tiny_vit.image_size, generator=gen)
    with torch.no_grad():
        method.fit_cache(tiny_vit.encode_image(images, normalize=True), torch.arange(6) % len(CLASSES))
        for p in method.trainable_parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=gen))
        method.start_test_stream()  # each is a pass of its own (a test-time method adapts on it)
        live = method(images)
        method.start_test_stream()
        cached = method.logits_from_image_features(tiny_vit.encode_image(images, normalize=True))
    torch.testing.assert_close(cached, live, atol=1e-5, rtol=1e-5)


def test_frozen_image_path_list_is_derived_not_kept():
    declared = classes(lambda c: c.frozen_image_path and classifies(c))
    assert {"zsclip", "coop", "cocoop", "kgcoop", "clip-adapter", "tip-adapter", "tip-adapter-f",
            "linear-probe"} <= set(declared)
    assert not {"vp", "vpt", "maple", "ivlp", "clip-lora", "calip", "mma"} & set(declared)
