"""The learnable prompt methods (every registered prompt method that trains a classifier:
CoOp, CoCoOp, KgCoOp, VP, VPT, IVLP, MaPLe, ...) and vlmeft.prompting.

The method lists come from the registry and the classes' declarations
(``tests/registered.py``), so a new prompt method is tested without editing this file.
Tiny random backbones for behaviour; one random-init ViT-B/16 (shared by the module) for
the parameter counts the papers report.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from registered import prompt_learners

from tests.conftest import images_for
from vlmeft import registry
from vlmeft.errors import VlmeftError

CLASSES = ["red square", "green circle", "blue triangle", "yellow star"]
NOVEL = ["purple hexagon", "orange dot", "black cross"]
TEMPLATES = ["a photo of a {}.", "a drawing of a {}."]
ALL_METHODS = prompt_learners()
VISION_METHODS = [n for n in ALL_METHODS if registry.get(n).requires_vision_tokens]
ANY_TOWER = [n for n in ALL_METHODS if not registry.get(n).requires_vision_tokens]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models gain nothing from threads, and on a shared 2-core machine
    oversubscription makes them many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def build(name, backbone, classes=CLASSES, templates=TEMPLATES, seed=0, **overrides):
    return registry.build(name, backbone, classes, templates, overrides, seed=seed)


def backbone_checksum(backbone) -> float:
    return float(sum(p.double().abs().sum() for p in backbone.model.parameters()))


# --------------------------------------------------------------------------- basics
def test_the_lists_cover_the_shipped_prompt_learners():
    assert {"coop", "cocoop", "kgcoop", "vp", "vpt", "ivlp", "maple"} <= set(ALL_METHODS)
    assert {"vpt", "ivlp", "maple"} <= set(VISION_METHODS) and {"coop", "vp"} <= set(ANY_TOWER)


@pytest.mark.parametrize("name", ALL_METHODS)
def test_logits_shape_finite_and_registry_attributes(tiny_vit, name):
    m = build(name, tiny_vit)
    cls = registry.get(name)
    assert m.name == name and cls.Config is type(m.config)
    logits = m(images_for(tiny_vit))
    assert logits.shape == (3, len(CLASSES))
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name", ANY_TOWER)
def test_methods_without_vision_tokens_run_on_resnet(tiny_rn, name):
    m = build(name, tiny_rn)
    images = images_for(tiny_rn)
    logits = m(images)
    assert logits.shape == (3, len(CLASSES)) and torch.isfinite(logits).all()


@pytest.mark.parametrize("name", VISION_METHODS)
def test_vision_token_methods_refuse_resnet_naming_what_runs(tiny_rn, name):
    with pytest.raises(VlmeftError) as err:
        build(name, tiny_rn)
    message = str(err.value)
    assert name in message and "ResNet" in message
    runnable = {s.strip() for s in message.split("run on it:")[1].split(",")}
    assert set(ANY_TOWER) <= runnable
    assert not runnable & set(VISION_METHODS)


# ------------------------------------------------------------------- what trains
@pytest.mark.parametrize("name", ALL_METHODS)
def test_only_method_parameters_get_gradients_and_change(tiny_vit, name):
    m = build(name, tiny_vit)
    backbone_ids = {id(p) for p in tiny_vit.parameters()}
    params = m.trainable_parameters()
    assert params and not backbone_ids & {id(p) for p in m.parameters()}
    before_backbone = backbone_checksum(tiny_vit)
    before = [p.detach().clone() for p in params]
    opt = torch.optim.SGD(params, lr=0.5)
    labels = torch.tensor([0, 1, 2])
    for step in range(2):
        opt.zero_grad()
        m.loss(m(images_for(tiny_vit, seed=step)), labels).backward()
        if step == 0:
            for p in tiny_vit.parameters():
                assert p.grad is None
            assert all(p.grad is not None for p in params)
            assert all(p.grad.abs().sum() > 0 for p in params), [
                n for n, p in m.named_parameters() if p.grad.abs().sum() == 0
            ]
        opt.step()
    assert backbone_checksum(tiny_vit) == before_backbone
    assert all(not torch.equal(a, p) for a, p in zip(before, params, strict=True))
    # Checkpoints hold only the method's own tensors, never class-dependent buffers.
    keys = set(m.state_tensors())
    assert keys == {n for n, _ in m.named_parameters()}
    assert not any(k.endswith(("prefix", "suffix", "tokens")) for k in keys)


@pytest.mark.parametrize("name", ALL_METHODS)
def test_set_classnames_after_training_keeps_trained_tensors(tiny_vit, name):
    m = build(name, tiny_vit)
    opt = torch.optim.SGD(m.trainable_parameters(), lr=0.5)
    opt.zero_grad()
    m.loss(m(images_for(tiny_vit)), torch.tensor([0, 1, 3])).backward()
    opt.step()
    trained = {k: v.clone() for k, v in m.state_tensors().items()}
    m.set_classnames(NOVEL)
    assert all(torch.equal(trained[k], v) for k, v in m.state_tensors().items())
    images = images_for(tiny_vit, seed=5)
    m.eval()  # inference logits (a method may use dropout in training: UPT)
    logits = m(images)
    assert logits.shape == (3, len(NOVEL)) and torch.isfinite(logits).all()
    # The same tensors loaded into a method built on the novel classes give the same logits.
    fresh = build(name, tiny_vit, classes=NOVEL, seed=123)
    if any(fresh.state_tensors()[k].shape != v.shape for k, v in trained.items()):
        # Tensors sized by the training label set (DePT's head): rebuilt on the training
        # classes, then switched, as engine.checkpoint.load does.
        fresh = build(name, tiny_vit, seed=123)
        fresh.load_state_tensors(trained)
        fresh.set_classnames(NOVEL)
    else:
        fresh.load_state_tensors(trained)
    torch.testing.assert_close(fresh.eval()(images), logits, atol=1e-5, rtol=0)


# --------------------------------------------------------- prompt mechanics (exact)
def test_coop_initialised_from_a_photo_of_a_reproduces_the_frozen_prompt(tiny_vit):
    m = build("coop", tiny_vit, n_ctx="4", ctx_init="a photo of a")
    frozen = tiny_vit.encode_text(tiny_vit.tokenize([f"a photo of a {c}." for c in CLASSES]), normalize=True)
    torch.testing.assert_close(m.text_features(), frozen, atol=1e-6, rtol=0)
    # ... although the prompts were cut after the longest prompt's EOT (exact under a causal mask).
    assert m.prompt_learner.tokens.shape[1] < tiny_vit.context_length
    # Class-specific context from the same init gives the same features, and one context per class.
    csc = build("coop", tiny_vit, n_ctx="4", ctx_init="a photo of a", csc="true")
    assert csc.prompt_learner.ctx.shape == (len(CLASSES), 4, tiny_vit.text_width)
    torch.testing.assert_close(csc.text_features(), frozen, atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    ("name", "overrides"),
    [("maple", {"depth": "1"}), ("ivlp", {"depth_text": "1"}), ("cocoop", {})],
)
def test_partial_init_keeps_the_remaining_words_frozen(tiny_vit, name, overrides):
    """MaPLe/IVLP learn 2 of the 4 tokens of "a photo of a"; without deeper prompts (and
    CoCoOp with a zero Meta-Net output) the text features equal the frozen prompt's."""
    m = build(name, tiny_vit, **overrides)
    frozen = tiny_vit.encode_text(tiny_vit.tokenize([f"a photo of a {c}." for c in CLASSES]), normalize=True)
    if name == "cocoop":
        with torch.no_grad():
            m.meta_net[-1].weight.zero_()
            m.meta_net[-1].bias.zero_()
        text = m.text_features(tiny_vit.encode_image(images_for(tiny_vit), normalize=True))
        torch.testing.assert_close(text, frozen.expand(3, -1, -1), atol=1e-6, rtol=0)
    else:
        torch.testing.assert_close(m.text_features(), frozen, atol=1e-6, rtol=0)


def test_cocoop_batched_text_pass_equals_the_per_image_loop(tiny_vit):
    from vlmeft.methods.prompt_textual_learnable.cocoop import logits_looped, text_features_looped

    m = build("cocoop", tiny_vit, seed=3)
    feats = tiny_vit.encode_image(images_for(tiny_vit, n=5), normalize=True)
    text = m.text_features(feats)
    assert text.shape == (5, len(CLASSES), tiny_vit.embed_dim)
    torch.testing.assert_close(text, text_features_looped(m, feats), atol=1e-5, rtol=0)
    torch.testing.assert_close(m.logits_from_image_features(feats), logits_looped(m, feats), atol=1e-5, rtol=0)
    # The per-image shift makes each image's classifier different.
    assert (text[0] - text[1]).abs().max() > 1e-6


def test_kgcoop_regulariser(tiny_vit):
    single = ["a photo of a {}."]
    m = build("kgcoop", tiny_vit, templates=single)
    feats = tiny_vit.encode_image(images_for(tiny_vit), normalize=True)
    labels = torch.tensor([0, 2, 3])
    # Initialised from the hand-crafted prompt itself: the knowledge term starts at 0.
    assert m.knowledge_loss().item() < 1e-10
    torch.testing.assert_close(m.loss(m.logits_from_image_features(feats), labels),
                               F.cross_entropy(m.logits_from_image_features(feats), labels))
    with torch.no_grad():
        m.prompt_learner.ctx.add_(0.3 * torch.randn_like(m.prompt_learner.ctx))
    logits = m.logits_from_image_features(feats)
    text = m.text_features().detach()
    # The official form: CE + W * (1 - mean_c cos(w_c, w_c^clip)), W = 8.
    cos = torch.nn.CosineSimilarity(dim=1, eps=1e-07)(text, tiny_vit.zero_shot_weights(CLASSES, single))
    expected_kg = 1.0 - cos.mean()
    assert expected_kg > 1e-4
    loss = m.loss(logits, labels)
    torch.testing.assert_close(loss, F.cross_entropy(logits, labels) + 8.0 * expected_kg, atol=1e-5, rtol=1e-5)
    loss.backward()
    assert m.prompt_learner.ctx.grad.abs().sum() > 0
    assert m.config.kg_weight == 8.0


# ------------------------------------------------------------- vision prompts
@pytest.mark.parametrize(
    ("name", "overrides", "added"),
    [("vpt", {}, 8), ("vpt", {"deep": "false", "n_tokens": "3"}, 3), ("ivlp", {}, 2), ("maple", {}, 2)],
)
def test_vision_sequence_grows_by_the_prompt_tokens(tiny_vit, name, overrides, added):
    m = build(name, tiny_vit, **overrides)
    m.image_features(images_for(tiny_vit))
    assert tiny_vit.last_vision_seq_len == 1 + tiny_vit.num_patches + added


def test_vpt_depth_and_frozen_text(tiny_vit):
    deep = build("vpt", tiny_vit)
    shallow = build("vpt", tiny_vit, deep="false")
    assert len(deep.prompts) == tiny_vit.vision_layers and len(shallow.prompts) == 1
    assert deep.num_trainable() == tiny_vit.vision_layers * 8 * tiny_vit.vision_width
    torch.testing.assert_close(deep.text_features(), tiny_vit.zero_shot_weights(CLASSES, deep.text_templates()))
    # Deep prompts change the features relative to the shallow ones built from the same seed.
    a, b = deep.image_features(images_for(tiny_vit)), shallow.image_features(images_for(tiny_vit))
    assert (a - b).abs().max() > 1e-6


def test_maple_vision_prompts_depend_on_text_prompts_ivlp_do_not(tiny_vit):
    images = images_for(tiny_vit)
    maple = build("maple", tiny_vit)
    ivlp = build("ivlp", tiny_vit)
    assert len(maple.text_prompt_parameters()) == len(ivlp.text_prompt_parameters()) == 3
    assert maple.depth == ivlp.depth_text == ivlp.depth_vision == 3  # paper depths, clipped to 3 layers
    # Coupled: the image features (hence the vision prompts) carry gradient to every text prompt.
    grads = torch.autograd.grad(maple.image_features(images).sum(), maple.text_prompt_parameters(), allow_unused=True)
    assert all(g is not None and g.abs().sum() > 0 for g in grads)
    vision = maple.vision_prompt_tensors()
    assert [v.shape for v in vision] == [(2, tiny_vit.vision_width)] * 3
    g = torch.autograd.grad(sum(v.sum() for v in vision), maple.text_prompt_parameters())
    assert all(x.abs().sum() > 0 for x in g)
    # Decoupled: no path from IVLP's text prompts to its image features.
    grads = torch.autograd.grad(ivlp.image_features(images).sum(), ivlp.text_prompt_parameters(), allow_unused=True)
    assert all(g is None or g.abs().sum() == 0 for g in grads)


def test_deep_prompt_hook_replaces_the_right_positions():
    from vlmeft.prompting import deep_prompt_hook

    x = torch.zeros(2, 6, 4)
    p1, p2 = torch.full((2, 4), 1.0), torch.full((2, 4), 2.0)
    text = deep_prompt_hook([p1, p2], "after_sos")
    assert torch.equal(text(0, x), x) and torch.equal(text(3, x), x)  # input layer and past depth: untouched
    out = text(2, x)
    assert out.shape == x.shape and (out[:, 1:3] == 2).all() and (out[:, [0, 3, 4, 5]] == 0).all()
    vision = deep_prompt_hook([p1, p2], "end")
    out = vision(1, x)
    assert out.shape == x.shape and (out[:, 4:] == 1).all() and (out[:, :4] == 0).all()


# ------------------------------------------------------------------ bad settings
def test_bad_settings_raise_clear_errors(tiny_vit):
    with pytest.raises(VlmeftError, match="exceeds the 4 tokens of ctx_init"):
        build("maple", tiny_vit, n_ctx="8", ctx_init="a photo of a")
    with pytest.raises(VlmeftError, match="depth must be at least 1"):
        build("maple", tiny_vit, depth="0")
    with pytest.raises(VlmeftError, match="depth_vision must be at least 1"):
        build("ivlp", tiny_vit, depth_vision="0")
    with pytest.raises(VlmeftError, match="n_tokens"):
        build("vpt", tiny_vit, n_tokens="0")
    with pytest.raises(VlmeftError, match="no room for the class name"):
        build("coop", tiny_vit, n_ctx=str(tiny_vit.context_length))
    with pytest.raises(VlmeftError, match="longer than the"):
        build("coop", tiny_vit, classes=["a " * tiny_vit.context_length])
    with pytest.raises(VlmeftError, match="kg_weight"):
        build("kgcoop", tiny_vit, kg_weight="-1")
    csc = build("coop", tiny_vit, csc="true")
    with pytest.raises(VlmeftError, match="class-specific context"):
        csc.set_classnames(NOVEL)


# ------------------------------------------- parameter counts at ViT-B/16 scale
@pytest.fixture(scope="module")
def vit_b16():
    from vlmeft.backbone import load_backbone

    return load_backbone("ViT-B-16", pretrained=None)


@pytest.mark.parametrize(
    ("name", "overrides", "count"),
    [
        ("coop", {"n_ctx": "4"}, 2_048),  # CoOp paper: 4 x 512
        ("coop", {"n_ctx": "16"}, 8_192),  # 16 x 512
        ("cocoop", {}, 35_360),  # 4 x 512 + Meta-Net 512 -> 32 -> 512
        ("maple", {}, 3_555_072),  # depth 9, 2 tokens, Linear(512 -> 768) per layer
        ("vpt", {}, 12 * 8 * 768),  # deep, 8 tokens in all 12 layers
        ("ivlp", {}, 12 * 2 * 512 + 12 * 2 * 768),  # 2+2 tokens, depth 12/12
    ],
)
def test_parameter_counts_on_vit_b16(vit_b16, name, overrides, count):
    assert build(name, vit_b16, classes=CLASSES, **overrides).num_trainable() == count
