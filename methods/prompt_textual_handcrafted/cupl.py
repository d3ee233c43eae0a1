"""# CuPL: customized prompts via language models

Pratt, Covert, Liu and Farhadi, *What does a platypus look like? Generating customized
prompts for zero-shot image classification*, ICCV 2023 (arXiv 2209.03320).

CLIP's prompt ensembling averages hand-written templates ("a photo of a {}.") that are
the same for every class. CuPL asks a language model (GPT-3) class-specific questions,
"Describe what a platypus looks like", "How can you identify a platypus?", ... (5
questions, 10 answers each at temperature 0.99), and uses the generated *sentences*
themselves as the class's prompts. The classifier is the usual ensemble, now over
class-specific sentences $S(c)$:

$$w_c = \\frac{\\bar w_c}{\\lVert \\bar w_c \\rVert}, \\quad \\bar w_c = \\frac{1}{|S(c)|}\\sum_{s \\in S(c)}
\\frac{g(s)}{\\lVert g(s) \\rVert}, \\qquad p(y = c \\mid x) \\propto \\exp(\\tau \\cos(f(x), w_c))$$

Nothing trains. "CuPL + e" adds the hand-written templates to each class's sentences
(``--set use_templates=true``).

The sentences come from a JSON file in the layout the authors published
(``all_prompts/*_prompts_full.json``: class name -> list of sentences), passed with
``--set prompts=PATH``, and are used as written (``clip.tokenize(..., truncate=True)``:
a long sentence is cut at the context length). On the embedded world (the default) they
are the world's own (:mod:`vlmeft.world.descriptors`, shipped in the same layout).

What this version simplifies: a class with no sentence (a probe's "black moon", absent
from every shipped file) falls back to its templates alone, where the official code
would fail on an empty token list. Otherwise it is ``zeroshot_classifier_gpt`` of
``classify_imagenet.py``.

Fidelity (faithful): the logits were compared with the official
``zeroshot_classifier_gpt`` at 719619c (``clip.tokenize`` stubbed by open_clip's tokenizer,
``.cuda()`` a no-op) on one random-weights open_clip ViT-B-16, with the authors'
``pets_prompts_full.json`` (37 classes, the sentences alone): max |difference| 3.2e-08
over 6 images, the same argmax. (CuPL + e was not compared.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from vlmeft import registry
from vlmeft.data import descriptors as class_texts
from vlmeft.method import MethodConfig
from vlmeft.methods.prompt_textual_handcrafted.dclip import ClassTextEnsemble
from vlmeft.recipes import Source


@dataclass
class Config(MethodConfig):
    """The authors' ImageNet evaluation, ``classify_imagenet.py`` of sarahpratt/CuPL
    (@ 719619c): the generated sentences alone (``use_both = False`` for the CuPL row,
    ``True`` for CuPL + e), each class's normalised sentence features averaged and
    re-normalised, CLIP loaded by ``clip.load`` on a GPU (fp16). Nothing trains (epochs 0).

    Embedded recipe: CuPL + e (``use_templates = true``). Chosen on val (the tasks' val
    splits, mean over seeds 1-3 and over digits / shapes / colors / color-shape): the
    sentences alone 0.459 (digits 0.546), with the templates 0.504 (digits 0.537); zero-shot
    CLIP's templates alone 0.538 (digits 0.519). Most of the world's sentences use words
    the tiny text encoder never saw (corners, sides, strokes), which the templates dilute."""

    epochs: int = 0
    prompts: str = ""  # JSON file in CuPL's layout; "" = the embedded world's sentences
    use_templates: bool = False  # CuPL + e: the task's templates join each class's sentences

    source: ClassVar[Source] = Source("sarahpratt/CuPL", "classify_imagenet.py", "719619c", "fp16")
    embedded: ClassVar[dict[str, Any]] = {"use_templates": True}


@registry.register
class CuPL(ClassTextEnsemble):
    """A zero-shot ensemble over class-specific generated sentences."""

    name = "cupl"
    Config = Config
    mean_of_scores = False  # CuPL re-normalises the mean, as CLIP's ensemble does

    def class_prompts(self) -> list[list[str]]:
        path = self.config.prompts
        if path:
            texts = class_texts.for_classes(class_texts.read(path), self.classnames, where=path)
        else:
            texts = class_texts.world("sentences", self.classnames)
        out = []
        for name, sentences in zip(self.classnames, texts):
            templates = [t.format(name) for t in self.templates]
            out.append((templates if self.config.use_templates else []) + list(sentences) or templates)
        return out
