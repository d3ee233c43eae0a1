"""The conformance probe for image information that reaches the text side through the
*support set* (the few-shot features given to ``fit_cache``), not through the query
image: Meta-Adapter's cross-attention and GraphAdapter's visual sub-graph are
cross-modal this way. Mutants show the probe can fail both ways: a cross-modal method
stripped of its support path is judged ``none``, and a unimodal method that starts
mixing support features into its text side is judged ``present``. A linear probe merely
*initialised* from the support set (LP++) is not counted."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vlmeft.conformance.signatures import judge, observe
from vlmeft.conformance.subject import ProbeData, Subject
from vlmeft.kb.load import load_kb
from vlmeft.methods.adapter_crossmodal.meta_adapter import MetaAdapter
from vlmeft.methods.adapter_unimodal.taskres import TaskRes


pytestmark = pytest.mark.usefixtures("one_thread")


class BlindMetaAdapter(MetaAdapter):
    """Mutant: the attention never sees the support features."""

    def text_features(self, image_features=None):  # noqa: ANN001, ANN201
        return F.normalize(self.zero_shot_weights() + 0 * self.gate(self.zero_shot_weights()), dim=-1)


class LeakyTaskRes(TaskRes):
    """Mutant: class means of the support features added to the residual classifier."""

    def fit_cache(self, features, labels):  # noqa: ANN001, ANN201
        onehot = F.one_hot(labels, len(self.classnames)).to(features)
        self.register_buffer("leak", onehot.t() @ features, persistent=False)

    def text_features(self, image_features=None):  # noqa: ANN001, ANN201
        leak = getattr(self, "leak", torch.zeros_like(self.base_text))
        return F.normalize(self.base_text + self.config.alpha * self.residual + leak, dim=-1)


def crossmodal_cell(method_id: str, leaf: str, cls, backbone):  # noqa: ANN001, ANN201
    subject = Subject(method_id, backbone, ProbeData.for_backbone(backbone))
    subject.cls = cls
    seen = observe(subject)["crossmodal_dependence"]
    signature = load_kb().categories.leaf(leaf).signature
    return judge("crossmodal_dependence", leaf, signature, cls, seen)


def test_support_path_is_seen_and_its_absence_fails(tiny_vit) -> None:
    status, reason = crossmodal_cell("meta-adapter", "adapter.crossmodal", MetaAdapter, tiny_vit)
    assert status == "pass" and "support images" in reason
    status, reason = crossmodal_cell("meta-adapter", "adapter.crossmodal", BlindMetaAdapter, tiny_vit)
    assert status == "fail" and "observed none" in reason


def test_unimodal_method_leaking_support_into_text_fails(tiny_vit) -> None:
    assert crossmodal_cell("taskres", "adapter.unimodal", TaskRes, tiny_vit)[0] == "pass"
    status, reason = crossmodal_cell("taskres", "adapter.unimodal", LeakyTaskRes, tiny_vit)
    assert status == "fail" and "support images" in reason


def test_initialising_from_the_support_set_is_not_fusion(tiny_vit) -> None:
    from vlmeft.methods.adapter_unimodal.lp_plus_plus import LPPlusPlus

    status, reason = crossmodal_cell("lp-plus-plus", "adapter.unimodal", LPPlusPlus, tiny_vit)
    assert status == "pass", reason
