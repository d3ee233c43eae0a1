"""What is specific to the learnable text-prompt methods ProGrad, LASP(-V), DePT, TCP,
ProDA, PLOT and TPT, and the seams they brought (``Method.backward``,
``Method.parameter_groups`` (DePT's head), ``set_virtual_classnames``). Their generic behaviour is covered
by the registry-parametrised method tests and the conformance matrix."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from tests.conftest import images_for
from vlmeft import registry
from vlmeft.errors import VlmeftError

CLASSES = ["red square", "green circle", "blue triangle", "yellow star"]
NOVEL = ["purple hexagon", "orange dot", "black cross"]
TEMPLATES = ["a photo of a {}.", "a drawing of a {}."]


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny models, one thread


def build(name, backbone, classes=CLASSES, seed=0, **overrides):
    return registry.build(name, backbone, classes, TEMPLATES, overrides, seed=seed)


LABELS = torch.tensor([0, 1, 3])


# ------------------------------------------------------------------- ProGrad
def test_prograd_projection_removes_only_the_conflicting_component():
    from vlmeft.methods.prompt_textual_learnable.prograd import project_conflicting

    g = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    conflicting = torch.tensor([[-1.0, 2.0], [0.5, 0.0]])
    out = project_conflicting(conflicting, g)
    assert abs(float((out * g).sum())) < 1e-6  # orthogonal to the general direction
    torch.testing.assert_close(out, torch.tensor([[0.0, 2.0], [0.5, 0.0]]))
    half = project_conflicting(conflicting, g, lam=0.5)
    torch.testing.assert_close(half, torch.tensor([[-0.5, 2.0], [0.5, 0.0]]))
    agreeing = torch.tensor([[1.0, 3.0], [0.0, 1.0]])
    assert torch.equal(project_conflicting(agreeing, g), agreeing)
    assert torch.equal(project_conflicting(conflicting, torch.zeros(2, 2)), conflicting)


def test_prograd_backward_writes_the_projected_cross_entropy_gradient(tiny_vit):
    m = build("prograd", tiny_vit, n_ctx="6")
    m.train()
    images = images_for(tiny_vit)
    ctx = m.prompt_learner.ctx
    with torch.no_grad():
        zs = tiny_vit.logit_scale() * m.image_features(images) @ m.zero_shot_weights().t()

    def gradients(labels):
        logits = m(images)
        ce = F.cross_entropy(logits, labels)
        kl = -(F.softmax(zs, -1) * F.log_softmax(logits, -1)).sum(1).mean()
        return torch.autograd.grad(ce, ctx, retain_graph=True)[0], torch.autograd.grad(kl, ctx)[0]

    def prograd_grad(labels):
        m.zero_grad()
        m.backward(m.loss(m(images), labels))
        return ctx.grad.clone()

    # Labels the zero-shot model likes least: the cross-entropy pulls against its knowledge.
    against = zs.argmin(dim=1)
    g_ce, g_kl = gradients(against)
    unit = g_kl / g_kl.norm()
    dot = float((g_ce * unit).sum())
    assert dot < 0, "the set-up must make the two gradients conflict"
    got = prograd_grad(against)
    torch.testing.assert_close(got, g_ce - dot * unit, atol=1e-6, rtol=1e-5)
    assert abs(float((got * unit).sum())) < 1e-5 * float(g_ce.norm())
    assert not torch.allclose(got, g_ce)
    # Labels it likes best: no conflict, the cross-entropy gradient is used as it is.
    along = zs.argmax(dim=1)
    g_ce, g_kl = gradients(along)
    assert float((g_ce * g_kl).sum()) > 0
    torch.testing.assert_close(prograd_grad(along), g_ce, atol=1e-6, rtol=1e-5)


def test_prograd_context_starts_as_zeros_then_a_photo_of_a(tiny_vit):
    m = build("prograd", tiny_vit, n_ctx="6")
    ctx = m.prompt_learner.ctx.detach()
    words = tiny_vit.token_embedding(tiny_vit.tokenize(["a photo of a"]))[0, 1:5]
    assert torch.equal(ctx[:2], torch.zeros_like(ctx[:2]))
    torch.testing.assert_close(ctx[2:], words.float())
    with pytest.raises(VlmeftError, match="shorter than the 4 tokens"):
        build("prograd", tiny_vit, n_ctx="3")


def test_the_engine_calls_the_methods_backward(tiny_vit, tiny_task):
    from vlmeft.engine import fit

    m = build("prograd", tiny_vit, epochs="1", batch_size="8", select="last", augment="false")
    calls = []
    original = m.backward
    m.backward = lambda loss: calls.append(1) or original(loss)  # type: ignore[method-assign]
    report = fit(m, tiny_task.train, None, seed=0, progress=False)
    assert report.steps > 0 and len(calls) == report.steps


# ---------------------------------------------------------------------- LASP
def test_lasp_text_to_text_loss_classifies_hand_crafted_features_by_learned_ones(tiny_vit):
    m = build("lasp", tiny_vit, lasp_prompts="task")
    m.eval()  # no noise
    learned = m.learned_features().detach()
    hand = m.hand_features  # [T, C, E]
    scale = tiny_vit.logit_scale()
    expected = []
    for t in range(hand.shape[0]):
        for c in range(hand.shape[1]):  # hand-crafted feature of class c, softmax over the learned classes
            expected.append(-F.log_softmax(scale * learned @ hand[t, c], dim=0)[c])
    torch.testing.assert_close(m.text_to_text_loss(learned), torch.stack(expected).mean())
    # The transposed loss (learned features classified by the hand-crafted ones) differs.
    swapped = torch.stack([-F.log_softmax(scale * hand[t] @ learned[c], dim=0)[c]
                           for t in range(hand.shape[0]) for c in range(hand.shape[1])]).mean()
    assert not torch.allclose(swapped, m.text_to_text_loss(learned))
    assert hand.shape[0] == len(TEMPLATES)
    assert build("lasp", tiny_vit).hand_features.shape[0] == 34  # the official LASP_PROMPTS


def test_lasp_v_trains_over_virtual_classes_and_predicts_over_its_own(tiny_vit):
    m = build("lasp-v", tiny_vit)
    m.set_virtual_classnames(NOVEL)
    assert m.all_classnames() == CLASSES + NOVEL
    assert m.hand_features.shape[1] == len(CLASSES) + len(NOVEL)
    images = images_for(tiny_vit)
    m.train()
    assert m(images).shape == (3, len(CLASSES) + len(NOVEL))
    m.eval()
    with torch.no_grad():
        assert m(images).shape == (3, len(CLASSES))
    # LASP ignores the names: its text-to-text loss covers its own classes only.
    plain = build("lasp", tiny_vit)
    plain.set_virtual_classnames(NOVEL)
    assert plain.hand_features.shape[1] == len(CLASSES)


def test_base_to_novel_offers_the_novel_names_before_training(tiny_vit, tiny_task):
    from types import SimpleNamespace

    from vlmeft.data import protocol
    from vlmeft.kinds.classification import _base_to_novel

    seen = {}

    def fit_(method, task, cell):
        seen["virtual"] = list(method.virtual)
        seen["classes"] = list(method.classnames)

    runner = SimpleNamespace(
        _task=lambda name: tiny_task,
        _build=lambda name, classes, templates, seed: registry.build(name, tiny_vit, classes, templates, {}, seed=seed),
        _fit=fit_, _evaluate=lambda method, split: 0.5, _zs_accuracy=lambda task, split: 0.5)
    _base_to_novel(runner, SimpleNamespace(task="tiny", method="lasp-v", seed=1))
    base, novel = protocol.base_novel(tiny_task)
    assert seen == {"virtual": novel.classnames, "classes": base.classnames}


# ---------------------------------------------------------------------- DePT
def test_dept_fuses_its_head_on_the_trained_classes_only(tiny_vit):
    m = build("dept", tiny_vit)
    with torch.no_grad():
        m.head.weight.normal_()
        m.film_image.shift.normal_()
    m.eval()
    images = images_for(tiny_vit)
    with torch.no_grad():
        feats = m.image_features(images)
        itm = tiny_vit.logit_scale() * feats @ m.text_features().t()
        cat = m.head(m.film_image(feats))
        torch.testing.assert_close(m(images), 0.3 * itm + 0.7 * cat)
        order = [2, 0]  # a subset, reordered: the matching head rows
        m.set_classnames([CLASSES[i] for i in order])
        itm_sub = tiny_vit.logit_scale() * feats @ m.text_features().t()
        torch.testing.assert_close(m(images), 0.3 * itm_sub + 0.7 * cat[:, order])
        m.set_classnames(NOVEL)  # new classes: image-text matching only
        torch.testing.assert_close(m(images), tiny_vit.logit_scale() * feats @ m.text_features().t())


def test_dept_head_trains_at_a_multiple_of_the_lr(tiny_vit, tiny_task):
    from vlmeft.engine import fit

    m = build("dept", tiny_vit, epochs="1", batch_size="8", select="last", augment="false", lr="0.01")
    groups = m.parameter_groups()
    assert [scale for _, scale in groups] == [1.0, 6.5]
    assert {id(p) for ps, _ in groups for p in ps} == {id(p) for p in m.trainable_parameters()}
    seen = []
    original = torch.optim.SGD.step

    def step(self, *args, **kwargs):
        seen.append([g["lr"] for g in self.param_groups])
        return original(self, *args, **kwargs)

    torch.optim.SGD.step = step  # type: ignore[method-assign]
    try:
        fit(m, tiny_task.train, None, seed=0, progress=False)
    finally:
        torch.optim.SGD.step = original  # type: ignore[method-assign]
    assert seen and all(math.isclose(head, 6.5 * prompt) for prompt, head in seen)


# ----------------------------------------------------------------------- TCP
def test_tcp_inserts_class_aware_tokens_at_its_layer_only(tiny_vit):
    from vlmeft.methods.prompt_textual_learnable.tcp import insertion_layer

    assert insertion_layer(8, 12) == 8 and insertion_layer(8, 4) == 3 and insertion_layer(8, 2) == 1
    m = build("tcp", tiny_vit)
    hook = m.class_aware_hook()
    x = torch.randn(len(CLASSES), 10, tiny_vit.text_width)
    with torch.no_grad():
        tokens = m.tke(m.zero_shot_weights()).view(len(CLASSES), 4, -1)
        for i in range(tiny_vit.text_layers + 1):
            out = hook(i, x)
            if i != m.layer:
                assert torch.equal(out, x)
        out = hook(m.layer, x)
    torch.testing.assert_close(out[:, 1:5], tokens)
    assert torch.equal(out[:, :1], x[:, :1]) and torch.equal(out[:, 5:], x[:, 5:])


def test_tcp_loss_is_cross_entropy_plus_kgcoop_regulariser(tiny_vit):
    m = build("tcp", tiny_vit)
    m.train()
    images = images_for(tiny_vit)
    logits = m(images)
    text = m.text_features()
    cos = F.cosine_similarity(text, m.zero_shot_weights(), dim=-1)
    expected = F.cross_entropy(logits, LABELS) + 8.0 * (1 - cos.mean())  # the official 8.0 * (1 - mean cos)
    torch.testing.assert_close(m.loss(logits, LABELS), expected)
    # The regulariser is KgCoOp's code (inherited), not a copy.
    from vlmeft.methods.prompt_textual_learnable.kgcoop import KgCoOp

    assert type(m).knowledge_loss is KgCoOp.knowledge_loss and type(m).loss is KgCoOp.loss


# ---------------------------------------------------------------------- ProDA
def test_proda_variance_margin_equals_the_explicit_diagonal_covariance():
    from vlmeft.methods.prompt_textual_learnable.proda import variance_margin

    g = torch.Generator().manual_seed(0)
    k, c, e, b = 5, 4, 6, 3
    prompts = torch.randn(k, c, e, generator=g)
    x = torch.randn(b, e, generator=g)
    labels = torch.tensor([0, 2, 3])
    z = prompts - prompts.mean(0)
    cov = torch.einsum("kie,kje->eij", z, z) / k  # per dimension: class-by-class covariance
    expected = torch.zeros(b, c)
    for i in range(b):
        y = int(labels[i])
        for j in range(c):
            expected[i, j] = (x[i] ** 2 * (cov[:, j, j] + cov[:, y, y] - 2 * cov[:, y, j])).sum()
    torch.testing.assert_close(variance_margin(x, prompts, labels), expected)
    assert torch.all(expected.gather(1, labels[:, None]).abs() < 1e-6)


def test_proda_predicts_with_the_mean_and_trains_on_the_bound(tiny_vit):
    m = build("proda", tiny_vit, n_prompts="4")
    images = images_for(tiny_vit)
    m.eval()
    with torch.no_grad():
        mean = m.prompt_features().mean(0)
        torch.testing.assert_close(m(images), tiny_vit.logit_scale() * m.image_features(images) @ mean.t())
    m.train()
    logits = m(images)
    assert m.loss(logits, LABELS) > F.cross_entropy(logits, LABELS)  # the variance margin only adds


# ---------------------------------------------------------------------- PLOT
def test_sinkhorn_plans_have_uniform_marginals():
    from vlmeft.methods.prompt_textual_learnable.plot import sinkhorn

    g = torch.Generator().manual_seed(0)
    sim = torch.rand(2, 3, 5, 4, generator=g) * 2 - 1
    plan = sinkhorn(torch.exp(-(1 - sim) / 0.1), 1000, 1e-9)
    torch.testing.assert_close(plan.sum(-1), torch.full((2, 3, 5), 1 / 5), atol=1e-5, rtol=0)
    torch.testing.assert_close(plan.sum(-2), torch.full((2, 3, 4), 1 / 4), atol=1e-5, rtol=0)


def test_sinkhorn_stops_per_image_so_plans_do_not_depend_on_the_batch():
    from vlmeft.methods.prompt_textual_learnable.plot import sinkhorn

    g = torch.Generator().manual_seed(1)
    sharp = torch.exp(-(1 - torch.rand(1, 3, 6, 4, generator=g)) / 0.02)  # converges slowly
    easy = torch.ones(1, 3, 6, 4)  # converges at once
    both = sinkhorn(torch.cat([sharp, easy]), 100, 1e-2)
    assert torch.equal(both[:1], sinkhorn(sharp, 100, 1e-2))
    assert torch.equal(both[1:], sinkhorn(easy, 100, 1e-2))


def test_plot_logit_is_the_transport_weighted_similarity(tiny_rn):
    m = build("plot", tiny_rn)  # ResNet: the attention pool's local features
    images = images_for(tiny_rn)
    m.eval()
    with torch.no_grad():
        _, tokens = tiny_rn.encode_image(images, return_tokens=True)
        local = F.normalize(tokens, dim=-1)
        prompts = m.prompt_features()
        sim = torch.einsum("bme,nce->bcmn", local, prompts)
        plan = torch.full_like(sim, 1 / (local.shape[1] * prompts.shape[0]))  # one local feature: uniform over prompts
        torch.testing.assert_close(m(images), tiny_rn.logit_scale() * (plan * sim).sum((-1, -2)))


# ----------------------------------------------------------------------- TPT
def test_tpt_views_are_seeded_by_the_image_not_its_position(tiny_vit):
    m = build("tpt", tiny_vit, n_views="5")
    images = images_for(tiny_vit, n=3)
    alone = m.views(images[2:])
    batch = m.views(images)
    assert torch.equal(batch[2], alone[0])
    assert torch.equal(batch[:, 0], images)  # view 0 is the image itself
    assert not torch.equal(batch[0, 1], batch[1, 1])
    other = build("tpt", tiny_vit, seed=1, n_views="5")  # another run seed, other views
    assert not torch.equal(other.views(images[2:]), alone)


def test_tpt_entropy_and_confidence_selection():
    from vlmeft.methods.prompt_textual_learnable.tpt import confident_views, marginal_entropy

    logits = torch.tensor([[[4.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 5.0, 0.0]]])
    mean = logits.softmax(-1).mean(1)
    torch.testing.assert_close(marginal_entropy(logits), -(mean * mean.log()).sum(-1))
    assert confident_views(logits, 0.5).tolist() == [[2]]
    assert confident_views(logits, 0.7).tolist() == [[2, 0]]


def test_tpt_tunes_per_image_resets_and_matches_zero_steps(tiny_vit):
    images = images_for(tiny_vit, n=3)
    m = build("tpt", tiny_vit, n_views="8")
    before = {k: v.clone() for k, v in m.state_tensors().items()}
    with torch.no_grad():
        tuned = m(images)
        one_by_one = torch.cat([m(images[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(tuned, one_by_one, atol=1e-5, rtol=1e-5)
    assert all(torch.equal(before[k], v) for k, v in m.state_tensors().items())  # the prompt was reset
    frozen = build("tpt", tiny_vit, n_views="8", tta_steps="0")
    with torch.no_grad():
        initial = frozen(images)
        prompt = tiny_vit.encode_text(tiny_vit.tokenize([f"a photo of a {c}." for c in CLASSES]), normalize=True)
    # No step: CoOp's "a photo of a" initialisation, i.e. that hand-written prompt.
    torch.testing.assert_close(initial, tiny_vit.logit_scale() * tiny_vit.encode_image(images, normalize=True)
                               @ prompt.t(), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(tuned, initial)
    assert m.num_trainable() == 0 and m.training_free


def test_tpt_test_time_objective_reaches_the_contexts(tiny_vit):
    m = build("tpt", tiny_vit, n_views="4")
    loss, (contexts,) = m.test_time_objective(images_for(tiny_vit, n=2))
    (grad,) = torch.autograd.grad(loss, [contexts])
    assert contexts.shape == (2, 4, tiny_vit.text_width) and grad.abs().sum(dim=(1, 2)).min() > 0
