"""VP (pixel padding prompt) and the red-circle marker prompt, on tiny real backbones."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vlmeft import registry
from vlmeft.data.types import GroundingSample
from vlmeft.errors import VlmeftError

CLASSES = ["red circle", "blue square", "green triangle"]
TEMPLATES = ["a photo of a {}."]


# ---------------------------------------------------------------------- VP
def test_vp_pad_scales_with_image_size_and_matches_paper_count() -> None:
    from vlmeft.methods.prompt_visual_pixel.vp import PaddingPrompt, scaled_pad

    assert scaled_pad(224) == 30 and scaled_pad(32) == 4 and scaled_pad(8) == 1
    assert scaled_pad(32, pad=2) == 2
    with pytest.raises(VlmeftError):
        scaled_pad(32, pad=16)
    prompt = PaddingPrompt(224, 30, device=torch.device("cpu"), dtype=torch.float32)
    assert sum(p.numel() for p in prompt.parameters()) == 69840  # the paper's ViT-B/16 setting


@pytest.mark.parametrize("fixture", ["tiny_vit", "tiny_rn"])
def test_vp_edits_only_the_border_and_keeps_text_frozen(fixture: str, request: pytest.FixtureRequest) -> None:
    bb = request.getfixturevalue(fixture)
    torch.manual_seed(0)
    vp = registry.build("vp", bb, CLASSES, TEMPLATES, {"init_std": "1"})  # the paper's random init
    pad = vp.prompt.pad
    assert pad == 4
    images = torch.randn(2, 3, bb.image_size, bb.image_size)
    edited = vp.prompt(images)
    inside = (slice(None), slice(None), slice(pad, -pad), slice(pad, -pad))
    assert torch.equal(edited[inside], images[inside])
    assert (edited - images).abs().amax(dim=1)[:, :pad].min() > 0  # every border pixel moves
    assert torch.equal(vp.text_features(), bb.zero_shot_weights(CLASSES, vp.text_templates()))
    logits = vp(images)
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()
    vp(images).logsumexp(-1).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in vp.trainable_parameters())
    assert not any(p.requires_grad for p in bb.model.parameters())


def test_vp_paper_defaults_and_wrong_size() -> None:
    from vlmeft.methods.prompt_visual_pixel.vp import Config, VisualPrompt
    from vlmeft.recipes import config_for

    cfg = Config()  # the paper recipe: the authors' main_clip.py defaults
    assert (cfg.lr, cfg.epochs, cfg.optimizer, cfg.weight_decay, cfg.batch_size) == (40.0, 1000, "sgd", 0.0, 256)
    assert (cfg.init_std, cfg.schedule, cfg.warmup_steps, cfg.augment) == (1.0, "cosine-steps", 1000, False)
    embedded = config_for(VisualPrompt, "embedded")  # chosen on val for 32 px inputs (module notes)
    assert (embedded.lr, embedded.epochs, embedded.init_std) == (1.0, 100, 0.0)
    assert VisualPrompt.category == "prompt.visual.pixel" and not VisualPrompt.requires_vision_tokens
    with pytest.raises(VlmeftError, match="pad"):
        cfg.apply_overrides({"pad": "-1"})


def test_vp_zero_init_starts_at_zero_shot(tiny_vit) -> None:  # noqa: ANN001
    vp = registry.build("vp", tiny_vit, CLASSES, TEMPLATES, recipe="embedded")  # init_std 0
    images = torch.randn(2, 3, tiny_vit.image_size, tiny_vit.image_size)
    assert torch.equal(vp.prompt(images), images)
    vp(images).logsumexp(-1).sum().backward()  # the zero border still gets a gradient
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in vp.trainable_parameters())


def test_vp_rejects_images_of_another_size(tiny_vit) -> None:  # noqa: ANN001
    vp = registry.get("vp")(tiny_vit, CLASSES, TEMPLATES)
    with pytest.raises(VlmeftError, match="32 px"):
        vp(torch.randn(1, 3, 40, 40))


# -------------------------------------------------------------- red circle
def _scene(seed: int, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    boxes = np.array([[2, 2, 12, 12], [18, 4, 30, 14], [8, 18, 20, 30]], np.float32)
    return image, boxes


def test_red_circle_refuses_classification(tiny_vit) -> None:  # noqa: ANN001
    rc = registry.get("red-circle")(tiny_vit)
    assert rc.tasks == ("grounding",) and rc.training_free and rc.num_trainable() == 0
    with pytest.raises(VlmeftError, match="grounding"):
        rc(torch.randn(1, 3, 32, 32))


def test_red_circle_draws_only_on_the_marker(tiny_vit) -> None:  # noqa: ANN001
    rc = registry.get("red-circle")(tiny_vit)
    image, boxes = _scene(0)
    marked = rc.mark(torch.from_numpy(image).permute(2, 0, 1).float() / 255, boxes)  # [K, 3, S, S]
    plain = (torch.from_numpy(image).permute(2, 0, 1).float() / 255 - torch.tensor(tiny_vit.mean).view(3, 1, 1)) / torch.tensor(
        tiny_vit.std).view(3, 1, 1)
    masks = rc.marker_mask(boxes, image.shape[:2])
    assert masks.shape == (3, 32, 32)
    for k in range(3):
        changed = (marked[k] - plain).abs().amax(dim=0) > 1e-6
        assert changed.any()
        assert not (changed & ~masks[k]).any()  # nothing outside the ring
        # the ring is drawn in the marker colour (red) wherever it is
        red = (torch.tensor([1.0, 0, 0]) - torch.tensor(tiny_vit.mean)) / torch.tensor(tiny_vit.std)
        assert torch.allclose(marked[k][:, masks[k]], red.view(3, 1).expand(3, int(masks[k].sum())), atol=1e-5)


def test_red_circle_maps_boxes_when_resizing(tiny_vit) -> None:  # noqa: ANN001
    rc = registry.get("red-circle")(tiny_vit)
    big = rc.marker_mask(np.array([[0, 0, 64, 64]], np.float32), (64, 64))
    small = rc.marker_mask(np.array([[0, 0, 32, 32]], np.float32), (32, 32))
    assert torch.equal(big, small)


def test_red_circle_ground_scores_and_prior(tiny_vit) -> None:  # noqa: ANN001
    rc = registry.get("red-circle")(tiny_vit)
    scenes = [_scene(i) for i in range(3)]
    images = np.stack([s[0] for s in scenes])
    exprs = ["the red circle", "the blue square", "the green star"]
    plain = rc.ground(images, [s[1] for s in scenes], exprs)
    assert [tuple(s.shape) for s in plain] == [(3,)] * 3
    rc.set_negatives(exprs)
    with_prior = rc.ground(images, [s[1] for s in scenes], exprs)
    assert not torch.allclose(plain[0], with_prior[0])
    # scores do not depend on how samples are batched (negatives are fixed)
    one = [rc.ground(images[i : i + 1], [scenes[i][1]], [exprs[i]])[0] for i in range(3)]
    for a, b in zip(with_prior, one):
        assert torch.allclose(a, b, atol=1e-6)
    with pytest.raises(VlmeftError, match="one box list"):
        rc.ground(images, [scenes[0][1]], exprs)


def test_red_circle_runs_on_a_resnet_tower(tiny_rn) -> None:  # noqa: ANN001
    rc = registry.get("red-circle")(tiny_rn)
    image, boxes = _scene(1)
    scores = rc.ground(image[None], [boxes], ["the red circle"])
    assert scores[0].shape == (3,) and torch.isfinite(scores[0]).all()


def test_grounding_accuracy_counts_hits(tiny_vit, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    from vlmeft.methods.prompt_visual_annotation.red_circle import grounding_accuracy, random_choice_accuracy

    rc = registry.get("red-circle")(tiny_vit)
    samples = [GroundingSample(*_scene(i), expression=f"e{i}", target=i % 3) for i in range(6)]
    # A stub scorer that always prefers box 0 hits exactly the samples whose target is 0.
    monkeypatch.setattr(rc, "ground", lambda images, boxes, exprs: [torch.tensor([1.0, 0.0, 0.0])] * len(exprs))
    assert grounding_accuracy(rc, samples) == pytest.approx(2 / 6)
    assert random_choice_accuracy(samples) == pytest.approx(1 / 3)
    assert rc.negatives == sorted(f"e{i}" for i in range(6))


@pytest.mark.slow
def test_red_circle_beats_random_on_scenes_with_synthclip() -> None:
    """With the shipped pretrained backbone (whose world has scenes with one object circled
    in red), marking boxes beats choosing at random by a clear margin."""
    from tests.conftest import synthclip_available

    if not synthclip_available():
        pytest.skip("synthclip-tiny weights are not installed in this checkout")
    from vlmeft.backbone import load_backbone
    from vlmeft.data.tasks import get_task
    from vlmeft.methods.prompt_visual_annotation.red_circle import grounding_accuracy, random_choice_accuracy

    samples = get_task("scenes").grounding[:150]
    rc = registry.get("red-circle")(load_backbone("synthclip-tiny"))
    acc, chance = grounding_accuracy(rc, samples), random_choice_accuracy(samples)
    assert acc > chance + 0.05, (acc, chance)


# ---------------------------------------------------------------------- EVP
def test_evp_pads_the_shrunk_image_with_the_frame(tiny_vit) -> None:  # noqa: ANN001
    import torch.nn.functional as F

    evp = registry.build("evp", tiny_vit, CLASSES, TEMPLATES, recipe="paper")
    assert evp.pad == 4 and evp.num_trainable() == 3 * (32 * 32 - 24 * 24)
    mean = torch.tensor(tiny_vit.mean).view(1, 3, 1, 1)
    std = torch.tensor(tiny_vit.std).view(1, 3, 1, 1)
    pixels = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        for p in evp.trainable_parameters():
            p.uniform_(-1, 1)
        out = evp.prompted((pixels - mean) / std) * std + mean  # back to pixel space
    shrunk = F.interpolate(pixels, size=(24, 24), mode="bicubic", align_corners=False, antialias=True)
    assert torch.allclose(out[..., 4:-4, 4:-4], shrunk, atol=1e-5)  # the image, not overlaid
    frame = evp.prompt.frame()
    border = torch.ones(32, 32, dtype=torch.bool)
    border[4:-4, 4:-4] = False
    assert torch.allclose(out[..., border], frame.expand(2, -1, -1, -1)[..., border], atol=1e-5)  # zeros + frame


def test_evp_step_is_the_official_normalised_gradient_update(tiny_vit) -> None:  # noqa: ANN001
    """One SGD step of EVP equals the official update on a full-size perturbation,
    ``delta -= lr * mask * g / ||g||`` with g the gradient of the *whole* perturbation."""
    import torch.nn.functional as F

    lr = 0.7
    torch.manual_seed(0)
    images = torch.randn(4, 3, 32, 32)
    labels = torch.tensor([0, 1, 2, 0])
    evp = registry.build("evp", tiny_vit, CLASSES, TEMPLATES, {"lr": str(lr)}, recipe="paper")
    with torch.no_grad():  # a non-zero starting frame, so the step is not taken from the origin
        for p in evp.trainable_parameters():
            p.normal_(0, 0.1)
    start = evp.prompt.frame().detach()

    # The official formulation, written out here: a full image-sized delta and a mask.
    mean = torch.tensor(tiny_vit.mean).view(1, 3, 1, 1)
    std = torch.tensor(tiny_vit.std).view(1, 3, 1, 1)
    delta = start.clone().requires_grad_(True)
    mask = torch.ones(1, 3, 32, 32)
    mask[..., 4:-4, 4:-4] = 0
    shrunk = F.interpolate(images * std + mean, size=(24, 24), mode="bicubic", align_corners=False, antialias=True)
    x = (F.pad(shrunk, (4, 4, 4, 4)) + delta - mean) / std
    text = tiny_vit.zero_shot_weights(CLASSES, TEMPLATES)
    logits = tiny_vit.logit_scale() * tiny_vit.encode_image(x, normalize=True) @ text.t()
    (g,) = torch.autograd.grad(F.cross_entropy(logits, labels), delta)
    expected = start - lr * mask * g / (g.norm() + 1e-10)

    opt = torch.optim.SGD(evp.trainable_parameters(), lr=lr, momentum=0.0)
    F.cross_entropy(evp(images), labels).backward()
    opt.step()
    assert torch.allclose(evp.prompt.frame(), expected, atol=1e-5)
    assert g[..., 4:-4, 4:-4].abs().sum() > 0  # the inside's gradient counts in the norm...
    assert torch.equal(evp.prompt.frame()[..., 4:-4, 4:-4], torch.zeros(1, 3, 24, 24))  # ...but never moves it


def test_evp_recipes() -> None:
    from vlmeft.methods.prompt_visual_pixel.evp import EVP, Config
    from vlmeft.recipes import config_for

    cfg = Config()
    assert (cfg.lr, cfg.epochs, cfg.batch_size, cfg.momentum, cfg.weight_decay) == (70.0, 1000, 256, 0.0, 0.0)
    assert (cfg.augment, cfg.crop_scale, cfg.schedule, cfg.warmup_epochs, cfg.grad_norm) == (True, 1.0, "dassl", 0, True)
    embedded = config_for(EVP, "embedded")
    assert (embedded.lr, embedded.epochs, embedded.augment) == (3.0, 100, False)
    with pytest.raises(VlmeftError, match="pad"):
        cfg.apply_overrides({"pad": "-2"})


# --------------------------------------------------------------------- FGVP
def test_fgvp_blurs_everything_but_each_box(tiny_vit) -> None:  # noqa: ANN001
    from vlmeft.methods.prompt_visual_annotation.fgvp import gaussian_blur, inside_boxes

    fg = registry.get("fgvp")(tiny_vit)
    assert fg.tasks == ("grounding",) and fg.training_free and fg.num_trainable() == 0
    assert fg.sigma == pytest.approx(100 * 32 / 336)  # the paper's 100 px at 336, scaled
    image, boxes = _scene(2)
    unit = torch.from_numpy(image).permute(2, 0, 1).float() / 255
    marked = fg.mark(unit, boxes)
    mean, std = torch.tensor(tiny_vit.mean).view(3, 1, 1), torch.tensor(tiny_vit.std).view(3, 1, 1)
    blurred = (gaussian_blur(unit, fg.sigma) - mean) / std
    plain = (unit - mean) / std
    inside = inside_boxes(torch.from_numpy(boxes), 32)
    marker = fg.marker_mask(boxes, image.shape[:2])
    assert torch.equal(marker, ~inside) and inside.any(dim=(1, 2)).all() and marker.any(dim=(1, 2)).all()
    for k in range(3):
        assert torch.allclose(marked[k][:, inside[k]], plain[:, inside[k]], atol=1e-6)  # the target stays sharp
        assert torch.allclose(marked[k][:, ~inside[k]], blurred[:, ~inside[k]], atol=1e-6)
        assert (marked[k] - plain).abs().amax(dim=0)[~inside[k]].gt(1e-3).float().mean() > 0.9  # and the rest changed
    with pytest.raises(VlmeftError, match="grounding"):
        fg(torch.randn(1, 3, 32, 32))


def test_gaussian_blur_keeps_flat_images_and_spreads_a_dot() -> None:
    from vlmeft.methods.prompt_visual_annotation.fgvp import gaussian_blur

    flat = torch.full((3, 16, 16), 0.3)
    assert torch.allclose(gaussian_blur(flat, 5.0), flat, atol=1e-6)  # edges replicated: no dark border
    dot = torch.zeros(1, 15, 15)
    dot[0, 7, 7] = 1.0
    out = gaussian_blur(dot, 1.0)
    assert out.sum() == pytest.approx(1.0, abs=1e-5) and out[0, 7, 7] < 0.2
    assert torch.allclose(out[0, 7, 6], out[0, 6, 7]) and out[0, 7, 6] > out[0, 7, 5]  # symmetric, decaying
    assert torch.equal(gaussian_blur(dot, 0.0), dot)


@pytest.mark.slow
def test_fgvp_beats_random_on_scenes_with_synthclip() -> None:
    from tests.conftest import synthclip_available

    if not synthclip_available():
        pytest.skip("synthclip-tiny weights are not installed in this checkout")
    from vlmeft.backbone import load_backbone
    from vlmeft.data.tasks import get_task
    from vlmeft.methods.prompt_visual_annotation.red_circle import grounding_accuracy, random_choice_accuracy

    samples = get_task("scenes", 1).grounding[:150]  # seed 1: the val scenes the recipe was chosen on
    fg = registry.get("fgvp")(load_backbone("synthclip-tiny"))
    acc, chance = grounding_accuracy(fg, samples), random_choice_accuracy(samples)
    assert acc > chance + 0.2, (acc, chance)
