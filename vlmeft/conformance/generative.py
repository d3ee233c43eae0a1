"""Behavioural probes for generative methods: the signature keys, observed on a captioner.

A generative method (:class:`vlmeft.generative.GenerativeMethod`) is probed on a CoCa
through three states it produces for the probe images and the probe texts of
:mod:`vlmeft.kinds._generative` (question + answer, caption):

- the **image memory** (image latent and the cross-attention tokens): the image side;
- the **unimodal text states** (CoCa's text tower, at the text positions): the text side;
- the **next-token logits** (the multimodal decoder, or LST's side network): the fusion.

Each key reads them as its meaning in ``categories.yaml`` says, with "frozen" the same
backbone without the method. ``crossmodal_dependence`` is ``present`` when the text
states depend on the image (a visual prefix), the image memory on the text, some
trainable tensor acts on both sides, or a trainable tensor *sits in the fusion*: it
changes the logits but neither the text states nor the image memory, and its effect on
the logits differs between two images (the decoder's adapted computation reads image
features). An adapter in the unimodal text decoder only (decoder LoRA, prefix tuning)
changes the text states, never depends on the image there, and so is unimodal.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from vlmeft.conformance.signatures import (
    Observed, _crossmodal, _fmt, _grad_wrt_text_prompts, _max_diff, _Probe, _trains_with, observe_image_input,
)
from vlmeft.conformance.subject import Subject, own_trainable


def _text_positions(method: Any, tokens: Tensor, memory: Any) -> Tensor:
    """The method's unimodal text states at the token positions (a prefix dropped)."""
    states = method.backbone.text_states(tokens, method.hooks, method.prefix(memory))
    return states[:, states.shape[1] - tokens.shape[1] :]


def _grads(method: Any, output: Tensor, seed: int) -> dict[str, Tensor]:
    """Gradient of a random projection of ``output`` for each trainable tensor (zeros where
    none flows)."""
    named = own_trainable(method)
    if not named or not output.requires_grad:
        return {}
    proj = torch.randn(output.shape, generator=torch.Generator().manual_seed(seed)).to(output.device, output.dtype)
    grads = torch.autograd.grad((output * proj).sum(), [p for _, p in named], allow_unused=True)
    return {n: (g if g is not None else torch.zeros_like(p)) for (n, p), g in zip(named, grads)}


def _nonzero(grads: dict[str, Tensor]) -> set[str]:
    return {n for n, g in grads.items() if bool(g.abs().max() > 0)}


def observe(subject: Subject) -> dict[str, Observed | Exception]:
    from vlmeft.kinds._generative import PROBE_PROMPTS, PROBE_TARGETS

    bb, d = subject.backbone, subject.data
    m = subject.build()
    subject.perturb(m)
    imgs, imgs_b = d.images.to(bb.device), d.images_b.to(bb.device)
    tokens, _ = m.sequences(PROBE_PROMPTS, PROBE_TARGETS)
    tokens = tokens[:, :-1]
    p = _Probe()
    p.run("trains", lambda: _trains_with(m, lambda: subject.kind.probe_loss(subject, m)))

    with torch.no_grad():
        mem, mem_b = m.encode_images(imgs), m.encode_images(imgs_b)
        frozen_mem = bb.image_memory(imgs)
        text, text_b = _text_positions(m, tokens, mem), _text_positions(m, tokens, mem_b)
        frozen_text = bb.text_states(tokens)

    def flat(memory: Any) -> Tensor:
        return torch.cat([memory.latent.flatten(1), memory.tokens.flatten(1)], dim=1)

    def text_changes() -> Observed:
        diff = _max_diff(text, frozen_text)
        return Observed(diff > 1e-5, f"max |text states - frozen text states| = {_fmt(diff)}")

    def image_changes() -> Observed:
        diff = _max_diff(flat(mem), flat(frozen_mem))
        return Observed(diff > 1e-5, f"max |image memory - frozen image memory| = {_fmt(diff)}")

    def text_dep() -> Observed:
        diff = _max_diff(text, text_b)
        return Observed(diff > 1e-5, f"max text-state change for other images = {_fmt(diff)}")

    def image_dep() -> Observed:
        # The image memory takes no text input: encode the same images twice, once after a
        # forward pass on other texts (a stateful method would show a difference).
        with torch.no_grad():
            m.token_logits(tokens.flip(0), m.encode_images(imgs))
            again = m.encode_images(imgs)
        diff = _max_diff(flat(again), flat(mem))
        return Observed(diff > 1e-5, f"the image memory has no text input; re-encoding after other texts changes it "
                                     f"by {_fmt(diff)}")

    p.run("text_changes", text_changes)
    p.run("image_changes", image_changes)
    p.run("text_depends_on_image", text_dep)
    p.run("image_depends_on_text", image_dep)

    observe_image_input(p, bb, imgs, lambda: m.encode_images(imgs))
    p.run("vision_prompt_grad_wrt_text_prompt",
          lambda: _grad_wrt_text_prompts(m, lambda: flat(m.encode_images(imgs))))

    def crossmodal() -> Observed:
        with torch.enable_grad():
            mem_g = m.encode_images(imgs)
            text_side = _nonzero(_grads(m, _text_positions(m, tokens, mem_g), seed=3))
            image_side = _nonzero(_grads(m, flat(m.encode_images(imgs)), seed=4))
            out_a = _grads(m, m.token_logits(tokens, m.encode_images(imgs)), seed=5)
            out_b = _grads(m, m.token_logits(tokens, m.encode_images(imgs_b)), seed=5)
        fusion = sorted(n for n in _nonzero(out_a) - text_side - image_side
                        if _max_diff(out_a[n], out_b[n]) > 0)
        got = _crossmodal(p.out.get("text_depends_on_image", Exception()),
                          p.out.get("image_depends_on_text", Exception()), text_side & image_side)
        if fusion:
            detail = f"trainable tensors in the fusion, whose effect depends on the image: {', '.join(fusion[:4])}"
            return Observed("present", detail if got.value == "none" else f"{got.detail}; {detail}")
        if got.value == "none":
            return Observed("none", "no trainable tensor acts in the fusion, and neither side depends on the other")
        return got

    p.run("crossmodal_dependence", crossmodal)
    return p.out
