"""What is specific to TaskRes, CLAP, LP++, APE/APE-T, Meta-Adapter, GraphAdapter and TDA,
on tiny random backbones: each test pins one mechanism of its paper and fails if that
mechanism is broken (a wrong closed form, a leaked stream, a class without support that
is not zero-shot, ...). Shapes, freezing, checkpoints and the category signatures are
the registry-parametrised tests' and the conformance matrix's."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from vlmeft import registry
from vlmeft.data.types import Split

pytestmark = pytest.mark.usefixtures("one_thread")

CLASSES = ["red square", "green circle", "blue triangle", "yellow star"]
TEMPLATES = ["a photo of a {}.", "a drawing of a {}."]


def unit(n: int, dim: int, seed: int) -> torch.Tensor:
    return F.normalize(torch.randn(n, dim, generator=torch.Generator().manual_seed(seed)), dim=-1)


def build(name, bb, overrides=None, classes=CLASSES, templates=TEMPLATES):
    return registry.build(name, bb, classes, templates, overrides or {}, seed=0)


# --------------------------------------------------------------------------- TaskRes
def test_taskres_alpha_zero_and_untrained_are_zero_shot(tiny_vit):
    """One template: the base classifier normalised is zero-shot CLIP's, so an untrained
    TaskRes, and a trained one at alpha 0, classify exactly as zero-shot CLIP."""
    feats = unit(5, tiny_vit.embed_dim, 1)
    zs = build("zsclip", tiny_vit, templates=["a photo of a {}."]).logits_from_image_features(feats)
    method = build("taskres", tiny_vit, templates=["a photo of a {}."])
    assert torch.allclose(method.logits_from_image_features(feats), zs, atol=1e-5)
    with torch.no_grad():
        method.residual.normal_()
    assert not torch.allclose(method.logits_from_image_features(feats), zs, atol=1e-3)
    method.config.alpha = 0.0
    assert torch.allclose(method.logits_from_image_features(feats), zs, atol=1e-5)


def test_taskres_base_is_raw_mean_over_templates(tiny_vit):
    """The base is the mean of *un-normalised* prompt features (TaskRes's), which differs
    from zero-shot CLIP's mean of normalised ones when there are several templates."""
    method = build("taskres", tiny_vit, {"text_template": ""})  # the task's templates, as the embedded recipe
    tokens = tiny_vit.tokenize([t.format(c) for c in CLASSES for t in TEMPLATES])
    raw = tiny_vit.encode_text(tokens).view(len(CLASSES), len(TEMPLATES), -1).mean(1)
    assert torch.allclose(method.base_text, raw, atol=1e-6)
    paper = build("taskres", tiny_vit)  # the paper recipe: the dataset's single (first) template
    assert paper.config.text_template == "first"
    assert torch.allclose(paper.base_text, tiny_vit.encode_text(tiny_vit.tokenize(
        [TEMPLATES[0].format(c) for c in CLASSES])), atol=1e-6)


# ------------------------------------------------------------------------------ CLAP
def test_clap_multipliers_are_zero_shot_class_accuracy(tiny_vit):
    method = build("clap", tiny_vit)
    feats, labels = unit(12, tiny_vit.embed_dim, 2), torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3])
    method.fit_cache(feats, labels)
    probs = torch.softmax(tiny_vit.logit_scale() * feats @ F.normalize(method.base_text, dim=-1).t(), -1)
    want = torch.stack([probs[labels == c, c].mean() for c in range(4)])
    assert torch.allclose(method.multipliers, want, atol=1e-6)
    assert float(method.penalty().detach()) == 0.0  # prototypes start at the base
    with torch.no_grad():
        method.prototypes.add_(1.0)
    expected = (want * (torch.ones_like(method.base_text)).pow(2).sum(-1)).mean()
    assert torch.allclose(method.penalty(), expected, atol=1e-5)
    logits = method.logits_from_image_features(feats)
    assert torch.allclose(method.loss(logits, labels), F.cross_entropy(logits, labels) + expected, atol=1e-5)
    method.config.constraint = "none"
    assert torch.allclose(method.loss(logits, labels), F.cross_entropy(logits, labels))


# ------------------------------------------------------------------------------ LP++
def test_lp_plus_plus_init_and_step_sizes(tiny_vit):
    method = build("lp-plus-plus", tiny_vit, {"lp_epochs": "1", "alpha_every": "5"})
    feats, labels = unit(8, tiny_vit.embed_dim, 3), torch.arange(8) % 4
    bias0 = method.bias.detach().clone()
    method.fit_cache(feats, labels)
    start = method._start
    assert torch.allclose(start["weight"], torch.stack([feats[labels == c].sum(0) for c in range(4)]))
    assert torch.equal(start["bias"], bias0)  # nn.Linear's own init, as the release keeps it
    text = feats @ method.zero_shot_weights().t()
    per_class = torch.stack([text[labels == c, c].mean() for c in range(4)])
    assert torch.allclose(start["alpha"], torch.full((4,), 250 * float(per_class.mean())), atol=1e-4)
    lr_w, lr_alpha = method.step_sizes(feats)
    lam = float(torch.linalg.eigvalsh((feats.t() @ feats).double()).max())
    assert lr_w == pytest.approx(4 * 8 / lam)
    assert lr_alpha == pytest.approx(8 / (4 * float(text.pow(2).sum(0).max())), rel=1e-5)
    # One epoch, no alpha step yet: W moved by exactly one SGD step of size lr_w.
    assert torch.equal(method.alpha.detach(), start["alpha"])
    with torch.enable_grad():
        w = start["weight"].clone().requires_grad_(True)
        logits = feats @ w.t() + start["bias"] + start["alpha"] * text
        grad = torch.autograd.grad(F.cross_entropy(logits, labels), w)[0]
    assert torch.allclose(method.weight.detach(), start["weight"] - lr_w * grad, atol=1e-5)


def test_lp_plus_plus_alpha_gradient_accumulates(tiny_vit):
    """The release never zeroes alpha's gradient: its second step (epoch 2 with
    alpha_every=1) uses the sum of both epochs' gradients."""
    method = build("lp-plus-plus", tiny_vit, {"lp_epochs": "2", "alpha_every": "1"})
    feats, labels = unit(8, tiny_vit.embed_dim, 4), torch.arange(8) % 4
    method.fit_cache(feats, labels)
    _, lr_alpha = method.step_sizes(feats)
    start, text = method._start, feats @ method.zero_shot_weights().t()

    def grads(w, b, a):
        with torch.enable_grad():
            ps = [t.clone().requires_grad_(True) for t in (w, b, a)]
            loss = F.cross_entropy(feats @ ps[0].t() + ps[1] + ps[2] * text, labels)
            return torch.autograd.grad(loss, ps)

    lr_w, _ = method.step_sizes(feats)
    g1 = grads(start["weight"], start["bias"], start["alpha"])
    w1, b1, a1 = start["weight"] - lr_w * g1[0], start["bias"] - lr_w * g1[1], start["alpha"] - lr_alpha * g1[2]
    g2 = grads(w1, b1, a1)
    assert torch.allclose(method.alpha.detach(), a1 - lr_alpha * (g1[2] + g2[2]), atol=1e-4)


def test_lp_plus_plus_keeps_best_val_epoch(tiny_vit):
    method = build("lp-plus-plus", tiny_vit, {"lp_epochs": "30"})
    feats, labels = unit(16, tiny_vit.embed_dim, 5), torch.arange(16) % 4
    val, val_labels = unit(8, tiny_vit.embed_dim, 6), torch.arange(8) % 4
    method.fit_cache(feats, labels)
    last = float((method.logits_from_image_features(val).argmax(1) == val_labels).float().mean())
    chosen = method.select_on_val(val, val_labels)
    kept = float((method.logits_from_image_features(val).argmax(1) == val_labels).float().mean())
    assert kept == pytest.approx(chosen["val_accuracy"]) and kept >= last
    assert 1 <= chosen["epoch"] <= 30


# ------------------------------------------------------------------------------- APE
def test_ape_criterion_closed_form_equals_pairwise_definition():
    from vlmeft.methods.adapter_unimodal.ape import channel_criterion

    g = torch.Generator().manual_seed(0)
    text, keys = torch.randn(3, 5, generator=g), torch.randn(7, 5, generator=g)
    labels = torch.tensor([0, 0, 1, 2, 2, 2, -1])  # unequal counts; -1 = a class no longer present
    samples = [(text[c], c) for c in range(3)] + [(keys[i], int(labels[i])) for i in range(7) if labels[i] >= 0]
    pairs = [(a * b) for (a, ca), (b, cb) in itertools.product(samples, samples) if ca != cb]
    sim = torch.stack(pairs).mean(0)
    want = -0.7 * sim + 0.3 * text.var(dim=0)
    assert torch.allclose(channel_criterion(text, keys, labels, 0.7, 0.3), want, atol=1e-5)


def test_ape_with_every_channel_and_no_kl_term_is_tip_adapter(tiny_vit):
    feats, labels = unit(8, tiny_vit.embed_dim, 7), torch.arange(8) % 4
    query = unit(5, tiny_vit.embed_dim, 8)
    ape = build("ape", tiny_vit, {"feat_fraction": "1.0", "gamma": "0.0", "alpha": "1.5", "beta": "3.0"})
    tip = build("tip-adapter", tiny_vit, {"alpha": "1.5", "beta": "3.0"})
    for m in (ape, tip):
        m.fit_cache(feats, labels)
    assert torch.allclose(ape.logits_from_image_features(query), tip.logits_from_image_features(query), atol=1e-4)
    ape.gamma.fill_(0.5)  # the KL weighting is what APE adds
    assert not torch.allclose(ape.logits_from_image_features(query), tip.logits_from_image_features(query), atol=1e-3)


def test_ape_t_untrained_is_tip_adapter_on_full_features(tiny_vit):
    """APE-T at its init (zero residual, unit value weights) is Tip-Adapter's formula on
    the full, un-refined features; a residual changes both the keys and the classifier."""
    feats, labels = unit(8, tiny_vit.embed_dim, 9), torch.arange(8) % 4
    query = unit(5, tiny_vit.embed_dim, 10)
    apet = build("ape-t", tiny_vit, {"alpha": "1.5", "beta": "3.0"})
    tip = build("tip-adapter", tiny_vit, {"alpha": "1.5", "beta": "3.0"})
    for m in (apet, tip):
        m.fit_cache(feats, labels)
    assert apet.value_weights.shape == (8, 1)
    assert torch.allclose(apet.logits_from_image_features(query), tip.logits_from_image_features(query), atol=1e-4)
    with torch.no_grad():
        apet.residual.fill_(0.1)
    text, keys, _ = apet.adapted()
    outside = torch.ones(tiny_vit.embed_dim, dtype=torch.bool)
    outside[apet.channels] = False
    assert torch.equal(text[:, outside], apet.zero_shot_weights()[:, outside])
    moved = keys[:, apet.channels] - apet.cache_keys[:, apet.channels]
    assert torch.allclose(moved, torch.full_like(moved, 0.1))
    values = F.one_hot(labels, 4).float() * apet.value_weights
    want = 100 * query @ text.t() + 1.5 * torch.exp(-3.0 * (1 - query @ keys.t())) @ values
    assert torch.allclose(apet.logits_from_image_features(query), want, atol=1e-4)


# ---------------------------------------------------------------------- Meta-Adapter
def test_meta_adapter_class_without_support_stays_zero_shot(tiny_vit):
    method = build("meta-adapter", tiny_vit)
    feats = unit(6, tiny_vit.embed_dim, 11)
    method.fit_cache(feats, torch.tensor([0, 0, 0, 1, 1, 2]))  # class 3 has no support
    text = method.text_features()
    zs = method.zero_shot_weights()
    assert torch.allclose(text[3], zs[3], atol=1e-6)  # attends to itself only: t + g t, normalised
    assert not torch.allclose(text[0], zs[0], atol=1e-4)


def test_meta_adapter_padding_is_masked(tiny_vit):
    """A class's refined embedding depends only on its own support, however many
    support features the other classes hold (padding never enters the attention)."""
    feats = unit(6, tiny_vit.embed_dim, 12)
    a = build("meta-adapter", tiny_vit)
    a.fit_cache(feats[:2], torch.tensor([0, 0]))
    b = build("meta-adapter", tiny_vit)
    b.fit_cache(feats, torch.tensor([0, 0, 1, 1, 1, 1]))
    assert a.support.shape[1] == 2 and b.support.shape[1] == 4
    assert torch.allclose(a.text_features()[0], b.text_features()[0], atol=1e-6)


# ---------------------------------------------------------------------- GraphAdapter
def test_graphadapter_groups_and_visual_subgraph(tiny_vit):
    classes = [f"class {i}" for i in range(6)]
    method = build("graphadapter", tiny_vit, classes=classes)
    assert [m.tolist() for m in method.group_members()] == [[0, 4], [1, 5], [2], [3]]  # c mod 4
    method.fit_cache(unit(12, tiny_vit.embed_dim, 13), torch.arange(12) % 6)
    first = method.text_features()
    method.fit_cache(unit(12, tiny_vit.embed_dim, 14), torch.arange(12) % 6)
    assert not torch.allclose(first, method.text_features(), atol=1e-5), "the visual sub-graph must matter"
    method.config.beta = 1.0
    assert torch.allclose(method.text_features(), F.normalize(method.base_text, dim=-1), atol=1e-6)


# ------------------------------------------------------------------------------- TDA
def _split(n: int) -> Split:
    rng = torch.Generator().manual_seed(15)
    images = (torch.rand(n, 32, 32, 3, generator=rng) * 255).to(torch.uint8).numpy()
    return Split(images=images, labels=(torch.arange(n) % 4).numpy(), key=f"tda-stream-{n}")


def test_tda_stream_does_not_depend_on_batching(tiny_vit):
    from vlmeft.engine import predict
    from vlmeft.engine.cache import FeatureCache

    method = build("tda", tiny_vit, {"zs_scale": "20"})
    split, cache = _split(24), FeatureCache(disk=False)
    whole = predict(method, split, batch_size=256, cache=cache)
    ones = predict(method, split, batch_size=1, cache=cache)
    fives = predict(method, split, batch_size=5, cache=cache)
    assert torch.equal(whole, ones) and torch.equal(whole, fives)
    # The stream really adapts: not zero-shot, and a second pass without a fresh stream differs.
    zs = 20 * cache.features(tiny_vit, split) @ method.zero_shot_weights().t()
    assert not torch.allclose(whole, zs, atol=1e-4)
    feats = cache.features(tiny_vit, split)
    with torch.no_grad():
        continued = method.logits_from_image_features(feats)  # the caches still hold the last pass
    assert not torch.equal(continued, whole)
    method.start_test_stream()
    with torch.no_grad():
        assert torch.equal(method.logits_from_image_features(feats), whole)


def test_tda_positive_cache_keeps_the_most_confident(tiny_vit):
    method = build("tda", tiny_vit, {"pos_shots": "2", "zs_scale": "20"})
    feats = unit(40, tiny_vit.embed_dim, 16)
    text = method.zero_shot_weights()
    with torch.no_grad():
        method.logits_from_image_features(feats)
    logits = 20 * feats @ text.t()
    entropy = -(logits.softmax(-1) * logits.log_softmax(-1)).sum(-1)
    pred = logits.argmax(-1)
    for c, entries in method.positive.entries.items():
        mine = sorted(float(entropy[i]) for i in range(40) if int(pred[i]) == c)
        assert [e[1] for e in entries] == pytest.approx(mine[:2])


def test_tda_first_sample_sees_only_itself(tiny_vit):
    method = build("tda", tiny_vit, {"zs_scale": "20"})
    f = unit(1, tiny_vit.embed_dim, 17)
    zs = 20 * f @ method.zero_shot_weights().t()
    with torch.no_grad():
        out = method.logits_from_image_features(f)
    bonus = torch.zeros_like(zs)
    bonus[0, int(zs.argmax())] = method.config.pos_alpha  # exp(-beta (1 - 1)) = 1
    assert torch.allclose(out, zs + bonus, atol=1e-5)


def test_tda_uses_no_training_data(tiny_vit):
    """The benchmark runs it once per task at shots 0 (its "uses no training data" path)."""
    from vlmeft.bench.plan import probe

    assert not probe("tda", tiny_vit, {}).uses_data
    assert probe("ape", tiny_vit, {}).uses_data and probe("lp-plus-plus", tiny_vit, {}).uses_data


# ----------------------------------------------------------------------------- engine
def test_adam_is_dasslish_l2_not_adamw():
    from vlmeft.engine.train import _optimizer
    from vlmeft.method import MethodConfig

    p = torch.nn.Parameter(torch.ones(3))
    opt = _optimizer([p], MethodConfig(optimizer="adam", lr=0.1, weight_decay=0.5))
    assert type(opt) is torch.optim.Adam and opt.defaults["weight_decay"] == 0.5
    assert type(_optimizer([p], MethodConfig(optimizer="adamw"))) is torch.optim.AdamW
