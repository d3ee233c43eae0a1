"""The executable taxonomy: every leaf's behavioural signature, checked on real models.

Modules:

* :mod:`.subject` — one method on one backbone, seeded probe data, instrumentation
  (the pixels entering ``visual.conv1``; the outputs of ``encode_text``/``encode_image``).
* :mod:`.signatures` — probes that observe each ``signature`` key of
  ``taxonomy/categories.yaml`` and judge it against the record's leaf.
* :mod:`.checks` — generic checks for every implementation (frozen backbone, only
  declared parameters move, training-free ⇒ no parameters, parameter count vs the
  record on an untrained ViT-B/16, finite logits, checkpoint round-trip, base→novel,
  determinism, batch-size invariance).
* :mod:`.matrix` — the generator: records → (record, check, backbone) cases → cells.
* :mod:`.report` — JSON / Markdown / terminal output; ``vlmeft conformance`` drives it.

Rows: records with their own implementation (fidelity ``faithful`` or ``simplified``).
Records with fidelity ``category-reference`` run their leaf's reference code, so they
share its cells instead of repeating them (listed under ``shared`` in the JSON).

Probes run on a *perturbed* method: every trainable tensor is moved off its initial
value, so identity initialisations (LoRA's zero B, a zero-initialised residual) cannot
hide which tower a method changes.

Probing conventions: optional hooks on methods
----------------------------------------------
The probes use the ordinary Method interface wherever they can. A few signature keys
need the method to say something only it knows:

``image_conditioned_text: ClassVar[bool]`` (class attribute, default False)
    The declaration behind the value ``declared`` (``text_depends_on_image`` and
    ``crossmodal_dependence`` of ``prompt.textual.learnable``). True for
    instance-conditional prompts (CoCoOp); the probe checks that the text features
    really do (or do not) change with the image.

``text_prompt_parameters() -> list[nn.Parameter]``
    The text-side prompt parameters, for ``vision_prompt_grad_wrt_text_prompt``
    (leaves ``prompt.multimodal.decoupled`` and ``prompt.multimodal.coupled``). The
    probe takes the gradient of the method's image feature with respect to them:
    non-zero when vision prompts are generated from the text prompts (MaPLe), zero when
    the two sets are independent (IVLP). Required for IVLP and MaPLe.

``marker_mask(boxes, image_hw) -> BoolTensor[K, S, S]``
    Where the marker for each box may change pixels, at the encoder's input size, for
    ``pixels_change_only_in_marker`` (leaf ``prompt.visual.annotation``). Grounding
    methods also provide ``ground(images, boxes, expressions) -> list[Tensor]``; the
    probe compares every image that reaches the encoder with the original outside the
    declared region.

Everything else is observed, not declared: text/image changes (against the frozen
zero-shot classifier and frozen image features), dependence across towers (other
images, other class names, parameters that receive gradient from both towers), pixel
edits (what enters the first convolution), token growth (``last_vision_seq_len``).
"""
