"""Adapter methods (every registered adapter: CLIP-Adapter, Tip-Adapter(-F), CLIP-LoRA, CALIP,
MMA, ...) on tiny random backbones: shapes, freezing, LoRA exactness and merging, Tip's
val-only search, and the unimodal / cross-modal signatures of the two adapter categories.

The method lists come from the registry and the classes' declarations
(``tests/registered.py``): a new adapter is tested without editing this file."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from registered import adapters, trained_configs

from vlmeft import registry
from vlmeft.errors import VlmeftError

CLASSES = ["red square", "green circle", "blue triangle", "yellow star"]
TEMPLATES = ["a photo of a {}.", "a drawing of a {}."]
ADAPTERS = adapters()
TRAINED = trained_configs(ADAPTERS)  # default configs that train, and training variants (CALIP-FS)
TRAINING_FREE = [n for n in ADAPTERS if registry.get(n).training_free]
UNIMODAL = [n for n in ADAPTERS if registry.get(n).category == "adapter.unimodal"]
TOKEN_ADAPTERS = [n for n in ADAPTERS if registry.get(n).requires_vision_tokens]


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def build(name, backbone, overrides=None, classes=CLASSES, templates=TEMPLATES):
    """The method with a cache of 8 frozen features (a no-op unless it is cache-based)."""
    cls = registry.get(name)
    config = cls.Config().apply_overrides(overrides or {})
    method = cls(backbone, classes, templates, config)
    gen = torch.Generator().manual_seed(0)
    feats = backbone.encode_image(torch.randn(8, 3, 32, 32, generator=gen), normalize=True)
    method.fit_cache(feats, torch.arange(8) % len(classes))
    return method


def test_the_lists_cover_the_shipped_adapters():
    assert {"clip-adapter", "tip-adapter", "tip-adapter-f", "clip-lora", "calip", "mma"} <= set(ADAPTERS)
    assert {"clip-adapter", "tip-adapter-f", "clip-lora", "mma"} <= {n for n, o in TRAINED if not o}
    assert any(n == "calip" and o.get("few_shot") == "true" for n, o in TRAINED)
    assert {"tip-adapter", "calip"} <= set(TRAINING_FREE) and {"calip", "mma"} <= set(TOKEN_ADAPTERS)


def images(n=3, seed=1):
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def frozen_state(backbone):
    return {k: v.clone() for k, v in backbone.state_dict().items()}


@pytest.mark.parametrize("name", ADAPTERS)
def test_logits_shape_and_finite(tiny_vit, name):
    method = build(name, tiny_vit).eval()
    with torch.no_grad():
        logits = method(images())
        feats = method.image_features(images())
    assert logits.shape == (3, len(CLASSES))
    assert torch.isfinite(logits).all()
    assert feats.shape == (3, tiny_vit.embed_dim)
    assert torch.allclose(feats.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert registry.get(name).name == name


@pytest.mark.parametrize("name,overrides", TRAINED)
def test_only_method_parameters_change(tiny_vit, name, overrides):
    """PEFT's invariant: after a few SGD steps every trainable tensor moved, the backbone
    is bit-identical, and no backbone parameter collected a gradient."""
    method = build(name, tiny_vit, overrides).train()
    before_bb = frozen_state(tiny_vit)
    before = {k: v.detach().clone() for k, v in method.named_parameters()}
    assert before, "a trained method must own parameters"
    opt = torch.optim.SGD(method.trainable_parameters(), lr=0.5)
    labels = torch.arange(4) % len(CLASSES)
    for _ in range(3):
        loss = F.cross_entropy(method(images(4)), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert all(p.grad is None for p in tiny_vit.parameters())
    for k, v in method.named_parameters():
        assert not torch.equal(v, before[k]), f"{name}: parameter {k} did not train"
    for k, v in tiny_vit.state_dict().items():
        assert torch.equal(v, before_bb[k]), f"{name}: backbone tensor {k} changed"


@pytest.mark.parametrize("name", TRAINING_FREE)
def test_training_free_methods_own_no_parameters(tiny_vit, name):
    method = build(name, tiny_vit)
    assert method.training_free and method.num_trainable() == 0


def test_calip_few_shot_trains_two_linear_layers(tiny_vit):
    fs = build("calip", tiny_vit, {"few_shot": "true", "epochs": "2"})
    assert not fs.training_free and fs.num_trainable() == 2 * (48 * 48 + 48)


# ------------------------------------------------------------------ parameter counts
def closed_form(name, bb, n_classes=100, shots=16):
    e, dt, dv, lt, lv = bb.embed_dim, bb.text_width, bb.vision_width, bb.text_layers, bb.vision_layers
    if name == "clip-adapter":
        return 2 * e * (e // 4)
    if name == "clip-lora":  # r=2 on q, k, v: A [2, d] and B [d, 2] each
        return 3 * 2 * (2 * dt) * lt + 3 * 2 * (2 * dv) * lv
    if name == "mma":
        from vlmeft.methods.adapter_crossmodal.mma import adapted_blocks

        nt, nv = len(adapted_blocks(lt, 5, 12)), len(adapted_blocks(lv, 5, 12))
        branch = lambda d: (d * 32 + 32) + (32 * d + d)  # noqa: E731 down + up, with biases
        return nt * branch(dt) + nv * branch(dv) + nv * (32 * 32 + 32)
    if name == "tip-adapter-f":
        return n_classes * shots * e
    raise KeyError(name)


def count(name, bb, n_classes=100, shots=16):
    classes = [f"class {i}" for i in range(n_classes)]
    method = registry.get(name)(bb, classes, ["a photo of a {}."])
    if name == "tip-adapter-f":
        labels = torch.arange(n_classes).repeat_interleave(shots)
        method.fit_cache(torch.randn(len(labels), bb.embed_dim), labels)
    return method.num_trainable()


@pytest.mark.parametrize("name", ["clip-adapter", "clip-lora", "mma", "tip-adapter-f"])
def test_parameter_counts_tiny(tiny_vit, name):
    assert count(name, tiny_vit, n_classes=4, shots=2) == closed_form(name, tiny_vit, n_classes=4, shots=2)


def test_parameter_counts_vit_b16():
    """The counts quoted in the records, on an untrained ViT-B/16 (real shapes)."""
    from vlmeft.backbone import load_backbone

    bb = load_backbone("ViT-B-16", pretrained=None)
    expected = {"clip-adapter": 131_072, "clip-lora": 184_320, "mma": 674_560, "tip-adapter-f": 819_200}
    for name, value in expected.items():
        assert closed_form(name, bb) == value
        assert count(name, bb, n_classes=100 if name == "tip-adapter-f" else 10) == value, name


# ------------------------------------------------------------------------- CLIP-LoRA
def test_lora_starts_exactly_at_frozen_model(tiny_vit):
    method = build("clip-lora", tiny_vit).eval()
    x = images()
    with torch.no_grad():
        assert torch.equal(method.image_features(x), tiny_vit.encode_image(x, normalize=True))
        plain = tiny_vit.encode_text(method.prompt_tokens, normalize=True)
        assert torch.equal(method.text_features(), plain)


def test_lora_merge_equals_unmerged(tiny_vit):
    method = build("clip-lora", tiny_vit).eval()
    with torch.no_grad():
        for p in method.lora_B.values():
            p.normal_(0, 0.5)
    x = images()
    with torch.no_grad():
        unmerged = method(x)
        merged = method.merged_state()
        # A plain open_clip model with the merged weights loaded: no LoRA code at all.
        model = copy.deepcopy(tiny_vit.model)
        state = {k.removeprefix("model."): v for k, v in merged.items()}
        assert len(state) == tiny_vit.text_layers + tiny_vit.vision_layers
        model.load_state_dict(state, strict=False)
        img = F.normalize(model.encode_image(x), dim=-1)
        txt = F.normalize(model.encode_text(method.prompt_tokens), dim=-1)
        plain_logits = tiny_vit.logit_scale() * img @ txt.t()
        before = tiny_vit.encode_image(x, normalize=True)
    assert not torch.allclose(img, before, atol=1e-4), "the update must change the model"
    # weight_overrides swap tensors in for one call only: the frozen Parameters are back.
    assert all(type(p) is torch.nn.Parameter for p in tiny_vit.parameters())
    assert torch.allclose(unmerged, plain_logits, atol=1e-4)


def test_lora_dropout_only_in_training(tiny_vit):
    method = build("clip-lora", tiny_vit)
    with torch.no_grad():
        for p in method.lora_B.values():
            p.normal_(0, 0.5)
    method.eval()
    x = images()
    with torch.no_grad():
        a, b = method.image_features(x), method.image_features(x)
        assert torch.equal(a, b)
        method.train()
        torch.manual_seed(0)
        c = method.image_features(x)
    assert not torch.allclose(a, c, atol=1e-6)


def test_text_cache_invalidated_on_train(tiny_vit):
    method = build("clip-lora", tiny_vit).eval()
    with torch.no_grad():
        first = method.class_text_features()
        assert method.class_text_features() is first  # cached at eval
        method.lora_B["text"].normal_(0, 0.5)  # an in-place edit invalidates the cache
        assert not torch.allclose(method.class_text_features(), first, atol=1e-5)
        method.train()
        method.eval()
        assert method.class_text_features() is not first


def test_lora_on_resnet_adapts_text_only(tiny_rn):
    method = build("clip-lora", tiny_rn)
    assert set(method.lora_A) == {"text"}
    with pytest.raises(VlmeftError):
        build("clip-lora", tiny_rn, {"encoders": "vision"})


# ------------------------------------------------------------------------ Tip-Adapter
def test_tip_logits_formula(tiny_vit):
    method = build("tip-adapter", tiny_vit).eval()
    f = tiny_vit.encode_image(images(), normalize=True)
    keys, labels = method.cache_keys, method.cache_labels
    zs = 100.0 * f @ tiny_vit.zero_shot_weights(CLASSES, TEMPLATES).t()
    cache = torch.exp(-method.beta * (1 - f @ keys.t())) @ F.one_hot(labels, len(CLASSES)).float()
    assert torch.allclose(method.logits_from_image_features(f), zs + method.alpha * cache, atol=1e-4)


def test_tip_search_uses_only_given_val_features(tiny_vit, monkeypatch):
    method = registry.get("tip-adapter")(tiny_vit, CLASSES, TEMPLATES,
                                         registry.get("tip-adapter").Config(beta_steps=40, alpha_steps=10, alpha_max=60.0)).eval()
    gen = torch.Generator().manual_seed(3)
    keys = F.normalize(torch.randn(16, tiny_vit.embed_dim, generator=gen), dim=-1)  # well separated
    method.fit_cache(keys, torch.arange(16) % len(CLASSES))
    # Val set 1: near the cache keys and labelled like them (the cache must outvote zero-shot).
    f1 = F.normalize(keys + 0.1 * torch.randn(keys.shape, generator=gen), dim=-1)
    y1 = method.cache_labels.clone()
    # Val set 2: the same features labelled as zero-shot predicts (the cache can only hurt).
    y2 = method.zero_shot_logits(f1).argmax(-1)
    assert (y1 != y2).any()
    # The search must not touch the image encoder (so it cannot read a test split).
    monkeypatch.setattr(tiny_vit, "encode_image", lambda *a, **k: (_ for _ in ()).throw(AssertionError("encoder")))
    r1 = method.select_on_val(f1, y1)
    assert (r1["alpha"], r1["beta"]) == (float(method.alpha), float(method.beta))
    acc = (method.logits_from_image_features(f1).argmax(-1) == y1).float().mean().item()
    assert acc == pytest.approx(r1["val_acc"]) and acc == 1.0
    r2 = method.select_on_val(f1, y2)
    assert r2["val_acc"] == 1.0
    assert (r1["alpha"], r1["beta"]) != (r2["alpha"], r2["beta"])


def test_tip_state_roundtrip_and_relabel(tiny_vit):
    method = build("tip-adapter-f", tiny_vit).eval()
    method.alpha.fill_(2.0)
    f = tiny_vit.encode_image(images(), normalize=True)
    with torch.no_grad():
        method.cache_keys.add_(0.01)
        want = method.logits_from_image_features(f)
    fresh = registry.get("tip-adapter-f")(tiny_vit, CLASSES, TEMPLATES)  # empty cache
    assert fresh.num_trainable() == 0
    fresh.load_state_tensors(method.state_tensors())
    with torch.no_grad():
        assert torch.allclose(fresh.logits_from_image_features(f), want, atol=1e-5)
    # Novel label set: entries of classes not in it stop voting, others are remapped.
    fresh.set_classnames(["blue triangle", "purple moon"])
    values = fresh.cache_values
    assert values.shape == (8, 2)
    assert torch.equal(values[:, 0], (fresh.cache_labels == 2).float())
    assert values[:, 1].sum() == 0


# ---------------------------------------------------------------- category signatures
@pytest.mark.parametrize("name", UNIMODAL)
def test_unimodal_image_feature_ignores_text_side(tiny_vit, name):
    method = build(name, tiny_vit).eval()
    x = images()
    with torch.no_grad():
        for p in method.trainable_parameters():  # off any identity init (LoRA's zero B)
            p.add_(0.5 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
        before = method.image_features(x)
        # Other names, same count: class-specific methods (TaskRes, LP++) keep their rows.
        method.set_classnames(["cat", "dog", "fox", "owl"], ["a sketch of a {}."])
        after = method.image_features(x)
    assert torch.equal(before, after)


def test_lora_towers_independent(tiny_vit):
    method = build("clip-lora", tiny_vit).eval()
    x = images()
    with torch.no_grad():
        img, txt = method.image_features(x), method.text_features().clone()
        method.lora_B["vision"].normal_(0, 0.5)
        assert torch.equal(method.text_features(), txt)  # recomputed: the text side is untouched
        assert not torch.allclose(method.image_features(x), img, atol=1e-5)


def _text_only_step(method):
    """One SGD step on a loss that reads only the text features."""
    method.train()
    opt = torch.optim.SGD(method.trainable_parameters(), lr=1.0)
    loss = method.text_features().pow(2).sum(-1).mean() - method.text_features()[:, 0].sum()
    opt.zero_grad()
    loss.backward()
    opt.step()
    method.eval()


def test_mma_text_gradient_moves_image_feature(tiny_vit):
    """MMA's signature: a step on a text-only loss changes the image feature, through the
    shared layer; the same step on CLIP-LoRA leaves the image feature unchanged."""
    x = images()
    mma = build("mma", tiny_vit).eval()
    with torch.no_grad():
        before = mma.image_features(x)
    _text_only_step(mma)
    with torch.no_grad():
        after = mma.image_features(x)
    assert not torch.equal(before, after)
    assert all(p.grad is None for p in mma.down["vision"].parameters())  # moved via `shared` alone

    lora = build("clip-lora", tiny_vit)
    with torch.no_grad():
        lora.lora_B["text"].normal_(0, 0.1)
        before = lora.eval().image_features(x)
    _text_only_step(lora)
    with torch.no_grad():
        assert torch.equal(before, lora.image_features(x))


def test_mma_branch_is_small_and_on_top_blocks(tiny_vit):
    from vlmeft.methods.adapter_crossmodal.mma import adapted_blocks

    assert adapted_blocks(12, 5, 12) == list(range(4, 12))
    assert adapted_blocks(3, 5, 12) == [1, 2]
    mma = build("mma", tiny_vit).eval()
    x = images()
    with torch.no_grad():
        diff = (mma.image_features(x) - tiny_vit.encode_image(x, normalize=True)).abs().max().item()
    assert 0 < diff < 0.05


def test_calip_image_side_depends_on_text(tiny_vit):
    method = build("calip", tiny_vit).eval()
    x = images()
    with torch.no_grad():
        before = method.image_features(x)
        pooled, spatial = method.encode(x)
        text = method.zero_shot_weights()
        _, text_a1 = method.attend(spatial, text)
        _, text_a2 = method.attend(spatial.flip(0), text)
        method.set_classnames(["cat", "dog", "fish"])
        after = method.image_features(x)
    assert not torch.allclose(before, after, atol=1e-6)  # text changed -> image feature changed
    assert not torch.allclose(text_a1, text_a2, atol=1e-6)  # image changed -> text feature changed


def test_calip_logits_formula(tiny_vit):
    method = build("calip", tiny_vit, {"beta2": "0", "beta3": "0"}).eval()
    x = images()
    with torch.no_grad():
        zs = tiny_vit.logit_scale() * tiny_vit.encode_image(x, normalize=True) @ method.zero_shot_weights().t()
        assert torch.allclose(method(x), zs, atol=1e-4)
        full = build("calip", tiny_vit).eval()
        assert not torch.allclose(full(x), zs, atol=1e-4)


@pytest.mark.parametrize("name", TOKEN_ADAPTERS)
def test_token_methods_refuse_resnet(tiny_rn, name):
    with pytest.raises(VlmeftError, match="vision tokens"):
        build(name, tiny_rn)


def test_config_validation():
    with pytest.raises(VlmeftError):
        registry.get("clip-lora").Config().apply_overrides({"targets": "qx"})
    with pytest.raises(VlmeftError):
        registry.get("mma").Config().apply_overrides({"adapter_start": "13"})
    with pytest.raises(VlmeftError):
        registry.get("calip").Config().apply_overrides({"few_shot": "true"})
    assert registry.get("tip-adapter-f").Config().epochs == 20
