"""What is specific to the multimodal prompt methods PromptSRC, RPO, UPT, DPT and CoPrompt
(their shared behaviour is covered by the registry-parametrised tests and conformance)."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from tests.conftest import images_for
from vlmeft import registry
from vlmeft.data.augment import second_view
from vlmeft.errors import VlmeftError

CLASSES = ["red square", "green circle", "blue triangle", "yellow star"]
TEMPLATES = ["a photo of a {}.", "a drawing of a {}."]
LABELS = torch.tensor([0, 1, 3])


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny models, one thread


def build(name, backbone, classes=CLASSES, seed=0, **overrides):
    return registry.build(name, backbone, classes, TEMPLATES, overrides, seed=seed)


@torch.no_grad()
def perturb(method, scale=0.5, seed=1):
    g = torch.Generator().manual_seed(seed)
    for p in method.trainable_parameters():
        p.add_(scale * torch.randn(p.shape, generator=g))


# ------------------------------------------------------------------ PromptSRC
def test_promptsrc_gpa_weights_are_a_normalised_gaussian_over_epochs():
    from vlmeft.methods.prompt_multimodal_decoupled.promptsrc import gpa_weights

    w = gpa_weights(20, 15.0, 1.0)
    assert len(w) == 20 and math.isclose(sum(w), 1.0, rel_tol=1e-12)
    assert max(range(20), key=w.__getitem__) == 14  # epoch 15 (1-based) carries the most weight
    assert w[13] == pytest.approx(w[15])  # symmetric about the mean
    with pytest.raises(VlmeftError, match="zero weight"):
        gpa_weights(3, 1e6, 1e-3)


def test_promptsrc_prompts_end_as_the_gaussian_average_of_the_epochs(tiny_vit):
    from vlmeft.methods.prompt_multimodal_decoupled.promptsrc import gpa_weights

    m = build("promptsrc", tiny_vit, epochs="4", gpa_mean="3", gpa_std="1")
    params = dict((n, p) for n, p in m.named_parameters() if p.requires_grad)
    seen = []
    for epoch in range(4):
        perturb(m, seed=epoch)
        seen.append({n: p.detach().clone() for n, p in params.items()})
        m.end_epoch(epoch, 4)
    w = gpa_weights(4, 3.0, 1.0)
    for n, p in params.items():
        expected = sum(w[t] * seen[t][n] for t in range(4))
        torch.testing.assert_close(p.detach(), expected, atol=1e-6, rtol=0)
    # With twice the epochs (min_steps), the Gaussian stretches: mean 6, std 2 over 8 epochs.
    m = build("promptsrc", tiny_vit, epochs="4", gpa_mean="3", gpa_std="1")
    name, p = next(iter((n, q) for n, q in m.named_parameters() if q.requires_grad))
    seen = []
    for epoch in range(8):
        perturb(m, seed=10 + epoch)
        seen.append(p.detach().clone())
        m.end_epoch(epoch, 8)
    w8 = gpa_weights(8, 6.0, 2.0)
    torch.testing.assert_close(p.detach(), sum(w8[t] * seen[t] for t in range(8)), atol=1e-6, rtol=0)


def test_promptsrc_loss_adds_the_self_regulating_terms(tiny_vit):
    m = build("promptsrc", tiny_vit, teacher_templates="task")
    perturb(m, scale=0.2)
    images = images_for(tiny_vit)
    m.train()
    logits = m(images)
    loss = m.loss(logits, LABELS)
    # The same terms computed here from their definitions.
    with torch.no_grad():
        bb = tiny_vit
        feats, text = m.image_features(images), m.text_features()
        frozen = bb.encode_image(images, normalize=True)
        per_template = torch.stack([bb.encode_text(bb.tokenize([t.format(c) for c in CLASSES])) for t in TEMPLATES])
        teacher = F.normalize(per_template.mean(0), dim=-1)
        zs = bb.logit_scale() * frozen @ teacher.t()
        p_zs = zs.softmax(1)
        kl = (p_zs * (p_zs.log() - logits.log_softmax(1))).sum() / logits.numel()
        expected = (F.cross_entropy(logits, LABELS) + 25 * (text - teacher).abs().mean()
                    + 10 * (feats - frozen).abs().mean() + kl)
    torch.testing.assert_close(loss.detach(), expected, atol=1e-5, rtol=1e-5)
    assert loss > F.cross_entropy(logits, LABELS) + 1e-4
    m.eval()
    with torch.no_grad():
        plain = m(images)
    assert torch.equal(m.loss(plain, LABELS), F.cross_entropy(plain, LABELS))  # no training forward: CE only


# ------------------------------------------------------------------------ RPO
def test_rpo_prompts_are_read_only_in_both_towers(tiny_vit):
    """Under RPO's masks the original tokens compute what the frozen model computes."""
    m = build("rpo", tiny_vit)
    perturb(m)
    bb, images = tiny_vit, images_for(tiny_vit)
    with torch.no_grad():
        image = bb.encode_image(images, prompt_tokens=m.vision_prompt[None], attn_mask=m.vision_mask)
        torch.testing.assert_close(image, bb.encode_image(images), atol=1e-5, rtol=0)
        index = m.positions[..., None].expand(-1, -1, bb.text_width)

        def put(i, x):
            return x.scatter(1, index, m.text_prompt.expand(x.shape[0], -1, -1)) if i == 0 else x

        text = bb.encode_text(m.tokens, layer_hook=put, attn_mask=m.text_mask)  # pooled at EOT
        torch.testing.assert_close(text, bb.encode_text(m.tokens), atol=1e-5, rtol=0)
        open_text = bb.encode_text(m.tokens, layer_hook=put)  # causal only: EOT never sees later tokens
        torch.testing.assert_close(open_text, text, atol=1e-5, rtol=0)


def test_rpo_score_is_the_mean_of_the_k_pairwise_cosines(tiny_vit):
    m = build("rpo", tiny_vit, k="3")
    perturb(m)
    images = images_for(tiny_vit)
    with torch.no_grad():
        img = m.image_features(images).view(3, 3, -1) * math.sqrt(3)  # back to per-prompt unit vectors
        txt = m.text_features().view(len(CLASSES), 3, -1) * math.sqrt(3)
        assert torch.allclose(img.norm(dim=-1), torch.ones(3, 3), atol=1e-5)
        expected = tiny_vit.logit_scale() * torch.einsum("bke,cke->bck", img, txt).mean(dim=-1)
        torch.testing.assert_close(m(images), expected, atol=1e-5, rtol=0)


def test_rpo_starts_from_the_special_tokens_and_fits_k_to_the_context(tiny_vit):
    m = build("rpo", tiny_vit, k="5")
    eot = tiny_vit.token_embedding(tiny_vit.tokenize([""]))[0, 1]
    cls = tiny_vit.model.visual.class_embedding
    torch.testing.assert_close((m.text_prompt - eot).norm(dim=-1), torch.full((5,), 0.1), atol=1e-5, rtol=0)
    torch.testing.assert_close((m.vision_prompt - cls).norm(dim=-1), torch.full((5,), 0.1), atol=1e-5, rtol=0)
    # The paper's 24 pairs on a 24-token text tower: clipped to half the context.
    big = build("rpo", tiny_vit, k="24")
    assert big.k == tiny_vit.context_length // 2 == big.text_prompt.shape[0]
    with pytest.raises(VlmeftError, match="do not fit"):
        big.set_classnames(["a " + " ".join(["very"] * 12) + " long name"])


# ------------------------------------------------------------------------ UPT
def _jacobian_blocks(m):
    """|d generator output rows / d unified rows| summed into [out_row, in_row]."""
    n = m.unified.shape[0]
    m.eval()
    jac = torch.autograd.functional.jacobian(m.generator, m.unified.detach())  # [n, D, n, D]
    return jac.abs().sum(dim=(1, 3)).reshape(n, n)


def test_upt_official_layer_mixes_no_prompts_and_attend_across_does(tiny_vit):
    official = _jacobian_blocks(build("upt", tiny_vit))
    off = ~torch.eye(official.shape[0], dtype=torch.bool)
    assert float(official[off].max()) == 0.0 and float(torch.diagonal(official).min()) > 0
    across = _jacobian_blocks(build("upt", tiny_vit, attend_across="true"))
    assert float(across[off].min()) > 0


def test_upt_text_and_visual_prompts_come_from_their_own_rows(tiny_vit):
    m = build("upt", tiny_vit).eval()
    n_t = m.config.n_ctx_text
    images = images_for(tiny_vit)
    with torch.no_grad():
        before_img, before_txt = m.image_features(images), m.text_features()
        m.unified[:n_t] += 1.0  # the text rows only
        after_img, after_txt = m.image_features(images), m.text_features()
    torch.testing.assert_close(after_img, before_img, atol=1e-6, rtol=0)  # official layout: no mixing
    assert (after_txt - before_txt).abs().max() > 1e-4


# ------------------------------------------------------------------------ DPT
def test_dpt_groups_phases_and_class_aware_prompts(tiny_vit):
    m = build("dpt", tiny_vit, epochs="10", guidance_epochs="4")
    (text, t_scale), (rest, r_scale) = m.parameter_groups()
    assert text == [m.prompt_learner.ctx] and t_scale == pytest.approx(0.2) and r_scale == 1.0
    assert len(rest) + 1 == len(m.trainable_parameters())
    assert m.guiding()
    for e in range(4):
        m.end_epoch(e, 20)  # twice the recipe's epochs: guidance lasts 8
    assert m.guiding()
    m.end_epoch(7, 20)
    assert not m.guiding()
    # The class-aware prompts read the text prompts: the image feature moves with them and with the class names.
    images = images_for(tiny_vit)
    with torch.no_grad():
        before = m.image_features(images)
        m.prompt_learner.ctx += torch.randn(m.prompt_learner.ctx.shape, generator=torch.Generator().manual_seed(4))
        moved = m.image_features(images)
        m.set_classnames(["purple hexagon", "orange dot", "black cross", "white moon"])
        renamed = m.image_features(images)
    assert (moved - before).abs().max() > 1e-5 and (renamed - moved).abs().max() > 1e-5


def test_dpt_loss_in_and_after_guidance(tiny_vit):
    m = build("dpt", tiny_vit, epochs="10", guidance_epochs="4", alpha="0")
    perturb(m, scale=0.1)
    images = images_for(tiny_vit)
    m.train()
    with torch.no_grad():
        feats, text = m.image_features(images), m.text_features()
        frozen = tiny_vit.encode_image(images, normalize=True)
        zs_text, scale = m.zero_shot_weights(), tiny_vit.logit_scale()
    logits = m(images)
    guided = m.loss(logits, LABELS)
    expected = (F.cross_entropy(scale * frozen @ text.t(), LABELS) + F.cross_entropy(scale * feats @ zs_text.t(), LABELS)
                + 0.1 * F.cross_entropy(logits, LABELS))
    torch.testing.assert_close(guided.detach(), expected.detach(), atol=1e-5, rtol=1e-5)
    m.end_epoch(4, 10)
    logits = m(images)
    torch.testing.assert_close(m.loss(logits, LABELS), F.cross_entropy(logits, LABELS), atol=1e-6, rtol=0)
    m = build("dpt", tiny_vit, epochs="10", guidance_epochs="0", alpha="1")
    m.train()
    logits = m(images)
    assert m.loss(logits, LABELS) > F.cross_entropy(logits, LABELS)  # the class-aware prompts' term


# ------------------------------------------------------------------- CoPrompt
def test_coprompt_adapters_on_normalised_features_equal_the_official_order(tiny_vit):
    """The adapter is positively homogeneous, so adapting normalised features and
    normalising gives what adapting the raw features (the official order) gives."""
    m = build("coprompt", tiny_vit)
    perturb(m, scale=0.3)
    images = images_for(tiny_vit)
    with torch.no_grad():
        vision = m.vision_prompt_tensors()
        from vlmeft.prompting import deep_prompt_hook

        raw = tiny_vit.encode_image(images, prompt_tokens=vision[0][None], layer_hook=deep_prompt_hook(vision[1:], "end"))
        official = F.normalize(0.1 * m.image_adapter(raw) + 0.9 * raw, dim=-1)
        torch.testing.assert_close(m.image_features(images), official, atol=1e-5, rtol=0)


def test_coprompt_descriptions_file_and_consistency(tiny_vit, tmp_path):
    good = tmp_path / "descriptions.json"
    good.write_text(json.dumps({c.replace(" ", "_"): [f"a {c} with straight edges.", f"the {c}."] for c in CLASSES}))
    m = build("coprompt", tiny_vit, descriptions=str(good))
    assert m.descriptions.shape == (2, len(CLASSES), tiny_vit.embed_dim)
    fallback = build("coprompt", tiny_vit)  # the task's templates stand in
    assert fallback.descriptions.shape[0] == len(TEMPLATES)
    assert (m.descriptions[0] - fallback.descriptions[0]).abs().max() > 1e-4
    bad = tmp_path / "partial.json"
    bad.write_text(json.dumps({"red square": ["a red square."]}))
    with pytest.raises(VlmeftError, match="green circle") as err:
        build("coprompt", tiny_vit, descriptions=str(bad))
    assert str(bad) in str(err.value)
    with pytest.raises(VlmeftError, match="not found"):
        build("coprompt", tiny_vit, descriptions=str(tmp_path / "missing.json"))
    m.train()
    logits = m(images_for(tiny_vit))
    assert m.loss(logits, LABELS) > F.cross_entropy(logits, LABELS) + 1e-6  # CE + lambda x consistency
    m = build("coprompt", tiny_vit, consistency_weight="0")
    m.train()
    logits = m(images_for(tiny_vit))
    torch.testing.assert_close(m.loss(logits, LABELS), F.cross_entropy(logits, LABELS), atol=1e-6, rtol=0)


def test_second_view_is_a_seeded_same_size_crop_and_flip():
    images = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    a = second_view(images, torch.Generator().manual_seed(3), 0.3)
    b = second_view(images, torch.Generator().manual_seed(3), 0.3)
    assert a.shape == images.shape and torch.equal(a, b)
    assert (a - images).abs().max() > 1e-3
    whole = second_view(images, torch.Generator().manual_seed(5), 1.0)  # full-area crops: the image or its mirror
    for img, out in zip(images, whole):
        assert torch.allclose(out, img, atol=1e-5) or torch.allclose(out, img.flip(-1), atol=1e-5)
