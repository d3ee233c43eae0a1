"""The Method base class: the eval-time text-feature cache and config overrides."""

from __future__ import annotations

import pytest
import torch

from vlmeft import registry
from vlmeft.errors import VlmeftError

CLASSES = ["red circle", "blue square", "green star"]
TEMPLATES = ["a photo of a {}."]


def _count_text_passes(method, monkeypatch) -> list[int]:
    calls: list[int] = []
    original = method.backbone.encode_text

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(method.backbone, "encode_text", counting)
    return calls


def test_trained_prompts_are_encoded_once_at_inference(tiny_vit, monkeypatch):
    method = registry.build("coop", tiny_vit, CLASSES, TEMPLATES, seed=0).eval()
    images = torch.randn(2, 3, tiny_vit.image_size, tiny_vit.image_size)
    calls = _count_text_passes(method, monkeypatch)
    with torch.no_grad():
        first = method(images)
        second = method(images)
    assert torch.equal(first, second)
    assert len(calls) == 1  # the second forward reused the cached class text features


def test_cache_never_serves_stale_features(tiny_vit):
    method = registry.build("coop", tiny_vit, CLASSES, TEMPLATES, seed=0).eval()
    with torch.no_grad():
        before = method.class_text_features()
        method.prompt_learner.ctx.add_(0.5)  # an in-place edit, as an optimiser step does
        after = method.class_text_features()
        assert not torch.allclose(before, after)
        assert torch.equal(after, method.text_features())
        method.set_classnames(CLASSES[:2])
        assert method.class_text_features().shape[0] == 2


def test_no_cache_while_training_or_with_autograd(tiny_vit):
    method = registry.build("coop", tiny_vit, CLASSES, TEMPLATES, seed=0)
    method.train()
    feats = method.class_text_features()
    assert feats.requires_grad  # a graph to the context: never a cached tensor
    method.eval()
    assert method.class_text_features().requires_grad  # autograd on: recomputed


def test_image_conditioned_text_is_not_cached(tiny_vit):
    method = registry.build("cocoop", tiny_vit, CLASSES, TEMPLATES, seed=0).eval()
    img = torch.nn.functional.normalize(torch.randn(2, tiny_vit.embed_dim), dim=-1)
    with torch.no_grad():
        assert method.class_text_features(img).shape == (2, len(CLASSES), tiny_vit.embed_dim)


def test_unknown_setting_is_refused_with_the_valid_ones(tiny_vit):
    with pytest.raises(VlmeftError, match="n_ctx"):
        registry.build("coop", tiny_vit, CLASSES, TEMPLATES, {"n_ctxx": "4"})
    with pytest.raises(VlmeftError, match="--set"):
        registry.build("coop", tiny_vit, CLASSES, TEMPLATES, {"epochs": "many"})
