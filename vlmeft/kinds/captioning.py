"""Image captioning: a method writes a caption for an image.

Protocol ``captioning``: train on ``shots`` images per image group (``--shots full``: every
training image; each epoch draws one of an image's reference captions), select on
``min(shots, 4)`` per group of val by CIDEr, caption every test image greedily (up to
``max_new_tokens``) and score CIDEr-D and BLEU-4 with ``pycocoevalcap``'s pure-Python
scorers on our own tokenisation (lower case, punctuation dropped: the COCO evaluation's
PTB tokenizer needs Java; :func:`vlmeft.data.vl.caption_scores`), on the test split and on
each shifted test set. Every row carries the frozen captioner's zero-shot scores (``coca``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from vlmeft.kinds import Protocol, ref
from vlmeft.kinds._generative import GenerativeKind


class Captioning(GenerativeKind):
    name = "captioning"
    order = 31
    data = "captions"
    task_form = "captions"
    example = "vlmeft run {id} --task world-captions --shots 16 --seed 1"
    main = "cider"
    main_label = "CIDEr"
    protocols = (Protocol("captioning", True, "k images per image group (or full), CIDEr and BLEU-4 of greedy "
                          "captions on the test images and the shifted sets", "cider"),)
    metrics = ("cider", "bleu4", "domains", "shifted_mean", "zero_shot_cider", "zero_shot_bleu4",
               "zero_shot_domains", "zero_shot_shifted_mean", "n_train", "full_data", "examples")
    observe = staticmethod(ref("vlmeft.conformance.generative:observe"))
    curves = (("captioning", "cider", "CIDEr"),)

    def score_outputs(self, predictions: Sequence[str], examples: Sequence[Any]) -> dict[str, float]:
        from vlmeft.data.vl import caption_scores

        return caption_scores(predictions, examples)

    def max_new(self, config: Any) -> int:
        return int(config.max_new_tokens)

    def length_setting(self) -> str:
        return "max_new_tokens"

    def metrics_shown(self) -> list[tuple[str, str]]:
        return [("cider", "CIDEr"), ("bleu4", "BLEU-4")]

    def fmt(self, value: float | None) -> str:
        return "n/a" if value is None else f"{100 * value:.1f}"


KIND = Captioning()
