"""Semantics pinned to the official code (see each method's module notes for the comparison
with the official repository on shared random weights):

* class names are cleaned (``_`` -> space) in every text path, in one place;
* KgCoOp's regulariser is ``W * (1 - mean cos)``, on the template the config names;
* with ``ctx_init`` set, CoOp and CoCoOp take the context length from its word count, while
  the MaPLe repository's IVLP and MaPLe keep ``n_ctx`` tokens of it;
* MaPLe's deeper couplings can start as copies of one layer, as in the official code;
* the image-conditioned text pass (CoCoOp) is chunked without changing logits or gradients.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F

from vlmeft import registry
from vlmeft.backbone.wrapper import class_prompt, clean_classname

UNDERSCORED = ["golden_retriever", "tabby_cat", "sea_lion", "fire truck"]
SPACED = [clean_classname(c) for c in UNDERSCORED]
TEMPLATES = ["a photo of a {}, a type of pet.", "a drawing of a {}."]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _images(backbone, n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, backbone.image_size, backbone.image_size, generator=g)


def _classification_methods():
    out = []
    for name in registry.names():
        cls = registry.get(name)
        if "classification" in cls.tasks:
            out.append(name)
    return out


# ------------------------------------------------------------------- class names
def test_clean_classname_rule():
    assert clean_classname("golden_retriever") == "golden retriever"
    assert clean_classname("fire truck") == "fire truck"
    assert class_prompt("a photo of a {}.", "sea_lion") == "a photo of a sea lion."


def _class_text_files(tmp_path) -> dict[str, str]:
    """Descriptor (DCLIP, WaffleCLIP) and sentence (CuPL) files for the underscored classes:
    the embedded world describes none of them. Keyed by the raw names; the readers also
    find a class under its cleaned name, so both label sets read the same texts."""
    descriptors = {c: ["a long tail", "four legs"] for c in UNDERSCORED}
    sentences = {c: [f"A photo of a {clean_classname(c)}, which is an animal."] for c in UNDERSCORED}
    (tmp_path / "descriptors.json").write_text(json.dumps(descriptors))
    (tmp_path / "sentences.json").write_text(json.dumps(sentences))
    return {"descriptors": str(tmp_path / "descriptors.json"), "prompts": str(tmp_path / "sentences.json")}


@pytest.mark.parametrize("name", _classification_methods())
def test_every_text_path_cleans_class_names(tiny_vit, name, tmp_path):
    """A method built on ``golden_retriever`` gives the logits of one built on ``golden retriever``
    (zero-shot classifier, prompt learners, adapted text towers, KgCoOp's reference)."""
    overrides = {"few_shot": "true", "epochs": "1"} if name == "calip" else {}
    fields = {f.name for f in dataclasses.fields(registry.get(name).Config)}
    overrides.update({k: v for k, v in _class_text_files(tmp_path).items() if k in fields})
    images = _images(tiny_vit)
    a = registry.build(name, tiny_vit, UNDERSCORED, TEMPLATES, overrides, seed=0)
    b = registry.build(name, tiny_vit, SPACED, TEMPLATES, overrides, seed=0)
    a.train(), b.train()  # the training-time path (no eval caches)
    torch.manual_seed(1)
    la = a(images)
    torch.manual_seed(1)
    lb = b(images)
    torch.testing.assert_close(la, lb, atol=0, rtol=0)
    if name == "kgcoop":
        assert torch.equal(a.knowledge_loss(), b.knowledge_loss())


def test_zero_shot_classifier_cleans_names(tiny_vit):
    """The bug this pins: the backbone's hand-written classifier read ``golden_retriever`` raw."""
    raw = tiny_vit.encode_text(tiny_vit.tokenize(["a photo of a golden_retriever."]), normalize=True)
    clean = tiny_vit.encode_text(tiny_vit.tokenize(["a photo of a golden retriever."]), normalize=True)
    assert (raw - clean).abs().max() > 1e-3  # the tokenizer alone does not clean them
    weights = tiny_vit.zero_shot_weights(["golden_retriever"], ["a photo of a {}."])
    torch.testing.assert_close(weights, clean, atol=1e-6, rtol=0)


# ------------------------------------------------------------------------ KgCoOp
def test_kgcoop_loss_on_fixed_tensors(tiny_vit, monkeypatch):
    """``CE + W (1 - mean_c cos)``: unit vectors at 60 and 90 degrees from their references
    give 1 - (0.5 + 0) / 2 = 0.75, so W = 8 adds exactly 6 (the squared distance would add 12)."""
    m = registry.build("kgcoop", tiny_vit, ["a", "b"], ["a photo of a {}."], {"kg_weight": "8"}, seed=0)
    dim = tiny_vit.embed_dim
    reference = torch.zeros(2, dim)
    reference[0, 0] = reference[1, 1] = 1.0
    text = torch.zeros(2, dim)
    text[0, 0], text[0, 1] = 0.5, 3**0.5 / 2  # 60 degrees from e0
    text[1, 2] = 1.0  # 90 degrees from e1
    monkeypatch.setattr(m, "zero_shot_weights", lambda: reference)
    assert m.knowledge_loss(text).item() == pytest.approx(0.75, abs=1e-7)
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.25]])
    labels = torch.tensor([0, 1])
    m._last_text = text
    assert m.loss(logits, labels).item() == pytest.approx(F.cross_entropy(logits, labels).item() + 6.0, abs=1e-6)


@pytest.mark.parametrize(
    ("choice", "expected"),
    [("", TEMPLATES), ("first", TEMPLATES[:1]), ("a photo of a {}.", ["a photo of a {}."])],
)
def test_text_template_choice(tiny_vit, choice, expected):
    """KgCoOp's reference features (and every frozen classifier) follow ``text_template``:
    the official KgCoOp uses the dataset's single CoOp template ("first")."""
    m = registry.build("kgcoop", tiny_vit, UNDERSCORED, TEMPLATES, {"text_template": choice}, seed=0)
    assert m.text_templates() == expected
    torch.testing.assert_close(m.zero_shot_weights(), tiny_vit.zero_shot_weights(SPACED, expected), atol=0, rtol=0)
    if choice != "first":
        first = tiny_vit.zero_shot_weights(SPACED, TEMPLATES[:1])
        assert (m.zero_shot_weights() - first).abs().max() > 1e-4  # the choice matters


def test_text_template_reaches_adapted_text_towers(tiny_vit):
    """Methods that re-encode one prompt per class (CLIP-LoRA, MMA) take the first of the
    templates in force: MMA's official prompt is "a photo of a {}." whatever the dataset."""
    m = registry.build("clip-lora", tiny_vit, UNDERSCORED, TEMPLATES, {"text_template": "a photo of a {}."}, seed=0)
    expected = tiny_vit.tokenize([f"a photo of a {c}." for c in SPACED])
    assert torch.equal(m.prompt_tokens, expected)


def test_text_template_bad_value(tiny_vit):
    from vlmeft.errors import VlmeftError

    with pytest.raises(VlmeftError, match="text_template"):
        registry.build("zsclip", tiny_vit, SPACED, TEMPLATES, {"text_template": "no braces"})


# ---------------------------------------------------------------- ctx_init rule
@pytest.mark.parametrize("name", ["coop", "cocoop", "kgcoop"])
@pytest.mark.parametrize("n_ctx", ["2", "16"])
def test_ctx_init_word_count_sets_the_context_length(tiny_vit, name, n_ctx):
    """CoOp/CoCoOp (and KgCoOp, built on CoOp): ``n_ctx = len(ctx_init.split(" "))``, the
    vectors initialised from the words' own embeddings."""
    m = registry.build(name, tiny_vit, SPACED, TEMPLATES, {"n_ctx": n_ctx, "ctx_init": "a photo of a"}, seed=0)
    words = tiny_vit.token_embedding(tiny_vit.tokenize(["a photo of a"]))[0, 1:5]
    assert m.prompt_learner.ctx.shape == (4, tiny_vit.text_width)
    torch.testing.assert_close(m.prompt_learner.ctx.detach(), words, atol=0, rtol=0)


@pytest.mark.parametrize(("name", "field"), [("maple", "n_ctx"), ("ivlp", "n_ctx_text")])
def test_maple_repository_keeps_n_ctx_tokens_of_the_init(tiny_vit, name, field):
    """MaPLe and IVLP learn the first 2 tokens of "a photo of a"; "of a" stay frozen words."""
    m = registry.build(name, tiny_vit, SPACED, TEMPLATES, {field: "2", "ctx_init": "a photo of a"}, seed=0)
    assert m.prompt_learner.ctx.shape == (2, tiny_vit.text_width)
    of_a = tiny_vit.token_embedding(tiny_vit.tokenize([f"a photo of a {SPACED[0]}."]))[0, 3:5]
    torch.testing.assert_close(m.prompt_learner.suffix[0, :2], of_a, atol=0, rtol=0)


def test_maple_shared_coupling_init(tiny_vit):
    own = registry.build("maple", tiny_vit, SPACED, TEMPLATES, {"depth": "3", "shared_coupling_init": "false"},
                         seed=0)
    shared = registry.build("maple", tiny_vit, SPACED, TEMPLATES, {"depth": "3"}, seed=0, recipe="paper")
    assert shared.config.shared_coupling_init  # the paper recipe's, as the official code builds them
    assert not torch.equal(own.couplings[1].weight, own.couplings[2].weight)
    assert torch.equal(shared.couplings[1].weight, shared.couplings[2].weight)
    assert torch.equal(shared.couplings[1].bias, shared.couplings[2].bias)
    assert not torch.equal(shared.couplings[0].weight, shared.couplings[1].weight)  # layer 0: its own
    assert torch.equal(shared.couplings[1].weight, own.couplings[1].weight)  # same draws, then copied


# ------------------------------------------------------------ chunked CoCoOp
@pytest.mark.parametrize("per_pass", [1, 3, 16])
def test_cocoop_chunked_passes_equal_the_single_pass(tiny_vit, per_pass):
    """Bounded passes (1 or 3 sequences: one image's classes sliced; 16: two whole images a
    pass) give the logits, text features and gradients of the single batched pass."""
    classes = [f"class {i}" for i in range(7)]
    feats = tiny_vit.encode_image(_images(tiny_vit, n=5), normalize=True)
    labels = torch.tensor([0, 3, 6, 2, 1])
    whole = registry.build("cocoop", tiny_vit, classes, TEMPLATES, seed=3)
    chunked = registry.build("cocoop", tiny_vit, classes, TEMPLATES, seed=3)
    chunked.prompt_learner.tokens_per_pass = per_pass * whole.prompt_learner.tokens.shape[1]
    whole.train(), chunked.train()
    lw, lc = whole.logits_from_image_features(feats), chunked.logits_from_image_features(feats)
    torch.testing.assert_close(lc, lw, atol=1e-5, rtol=1e-6)
    whole.loss(lw, labels).backward()
    chunked.loss(lc, labels).backward()
    for (name, pw), pc in zip(whole.named_parameters(), chunked.parameters(), strict=True):
        torch.testing.assert_close(pc.grad, pw.grad, atol=1e-6, rtol=1e-5, msg=name)
    with torch.no_grad():
        torch.testing.assert_close(chunked.text_features(feats), whole.text_features(feats), atol=1e-6, rtol=0)


@pytest.mark.parametrize(("n_images", "n_classes", "per_pass"), [(5, 7, 3), (8, 10, 29), (8, 10, 80)])
def test_cocoop_pass_size_is_bounded(tiny_vit, monkeypatch, n_images, n_classes, per_pass):
    """No text-encoder call sees more sequences than the budget allows: classes sliced (7 > 3),
    whole images (2 of 10 classes fit in 29: never 3), everything in one pass (80)."""
    classes = [f"class {i}" for i in range(n_classes)]
    m = registry.build("cocoop", tiny_vit, classes, TEMPLATES, seed=3)
    seq_len = m.prompt_learner.tokens.shape[1]
    m.prompt_learner.tokens_per_pass = per_pass * seq_len
    seen = []
    original = tiny_vit.encode_text

    def spy(tokens, **kw):
        seen.append(tokens.shape[0])
        return original(tokens, **kw)

    monkeypatch.setattr(tiny_vit, "encode_text", spy)
    feats = tiny_vit.encode_image(_images(tiny_vit, n=n_images), normalize=True)
    with torch.no_grad():
        m.eval().logits_from_image_features(feats)
    assert seen and max(seen) <= per_pass and sum(seen) == n_images * n_classes
