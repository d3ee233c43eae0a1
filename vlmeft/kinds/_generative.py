"""What the two generative kinds (VQA and captioning) share: measuring, zero-shot, reporting.

A generative cell trains a method on ``shots`` examples per group of a :class:`~vlmeft.data.vl.VLTask`
(question type or image kind; :data:`FULL` or any count at least the largest group = the
full training split), selects on ``min(shots, 4)`` per group of val by the kind's own
score, and scores the greedy output on the test split and each shifted test set. Every
row carries the frozen captioner's zero-shot scores on the same data (method ``coca``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from vlmeft.errors import VlmeftError
from vlmeft.kinds import Column, TaskKind

FULL = 100_000  # shots meaning "every training example" (`--shots full`)
ZERO_SHOT = "coca"  # the registered frozen captioner that gives each row its zero-shot reference
DEFAULT_BACKBONE = "synthcoca-tiny"
CONFORMANCE_BACKBONES = ("synthcoca-tiny", "vlmeft-tiny-coca")

# Conformance probe texts: words of the world's vocabulary, so synthcoca-tiny can say each.
PROBE_PROMPTS = ("what color is the circle?", "", "how many objects are there?", "")
PROBE_TARGETS = ("red", "a red circle", "two", "a blue square on the left")


def shots_label(shots: int) -> str:
    return "full data" if shots >= FULL else f"{shots}-shot"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


class GenerativeKind(TaskKind):
    """A kind whose methods write text: subclasses say which text (``task_form``), how it is
    scored (:meth:`score_outputs`, whose ``main`` metric selects on val) and how long it may be."""

    task_form = ""  # vlmeft.data.vl.VLTask.kind: "vqa" | "captions"
    main = ""  # the headline metric
    classifier = False
    backbone = DEFAULT_BACKBONE
    conformance_backbones = CONFORMANCE_BACKBONES
    observe = None  # set by the subclasses (a ref into vlmeft.conformance.generative)

    # ------------------------------------------------------------- subclass API
    def score_outputs(self, predictions: Sequence[str], examples: Sequence[Any]) -> dict[str, float]:
        raise NotImplementedError

    def max_new(self, config: Any) -> int:
        raise NotImplementedError

    def length_setting(self) -> str:
        raise NotImplementedError

    # ------------------------------------------------------------------ planning
    def task_fits(self, load: Callable[[], Any], protocol: str) -> bool:
        return True

    def method_fits(self, caps: Any, method: str, protocol: str) -> bool:
        return caps.builds and self.name in caps.tasks

    # ----------------------------------------------------------------- measuring
    def score(self, method: Any, split: Any, keep: int = 0) -> dict[str, Any]:
        """The kind's scores of the method's greedy outputs on ``split`` (and, with ``keep``,
        that many spread-out ``[prompt, output, first reference]`` examples)."""
        from vlmeft.engine.generative import generate_split

        predictions = generate_split(method, split, self.max_new(method.config))
        out: dict[str, Any] = self.score_outputs(predictions, split.examples)
        if keep:
            step = max(1, len(split) // keep)
            out["examples"] = [[split.examples[i].prompt, predictions[i], split.examples[i].targets[0]]
                               for i in range(0, len(split), step)][:keep]
        return out

    def check_task(self, task: Any, backbone: Any) -> None:
        """The task is of this kind, and its targets use tokens the backbone can generate."""
        if getattr(task, "kind", None) != self.task_form:
            raise VlmeftError(f"task '{task.name}' is not a {self.title} task", where="--task")
        noun = "answer" if self.task_form == "vqa" else "caption"
        for split in (task.train, task.val, task.test, *task.shifted.values()):
            for ex in split.examples:
                for target in ex.targets:
                    bad = backbone.unknown_words(target)
                    if bad:
                        raise VlmeftError(f"{noun} vocabulary mismatch: {noun} {target!r} of {ex.id or 'an entry'} "
                                          f"uses {', '.join(repr(b) for b in bad[:3])}, which {backbone.name} cannot "
                                          "generate (its shipped weights hold only the world's tokens; use a CoCa "
                                          "with a full vocabulary, e.g. --backbone coca_ViT-B-32)",
                                          where=task.name)

    def measure(self, runner: Any, cell: Any) -> tuple[dict[str, Any], Any, Any]:
        from vlmeft import registry
        from vlmeft.data.vl import few_shot_splits, is_full
        from vlmeft.engine.generative import fit_generative

        task = runner._task(cell.task)
        self.check_task(task, runner.backbone)
        method = runner._build(cell.method, [], [], cell.seed)
        prompts = [e.prompt for e in task.test.examples]
        method.check_generation(prompts, self.max_new(method.config), where=f"--set {self.length_setting()}")
        report, n_train = None, 0
        if cell.shots > 0:  # (a training-free method comes back at once, with an empty report)
            train, val = few_shot_splits(task, cell.shots, cell.seed)
            n_train = len(train) if not registry.get(cell.method).training_free else 0
            report = fit_generative(method, train, val, seed=cell.seed, progress=runner.progress,
                                    score=lambda m, split: self.score(m, split)[self.main])
            if runner.on_trained is not None:
                runner.on_trained(method)
        metrics = self._scores(method, task, prefix="")
        if cell.method != ZERO_SHOT:
            metrics.update(self._zero_shot(runner, task))
        metrics["n_train"] = n_train
        metrics["full_data"] = bool(n_train) and is_full(task, cell.shots)
        return metrics, method, report

    def _scores(self, method: Any, task: Any, prefix: str) -> dict[str, Any]:
        import numpy as np

        test = self.score(method, task.test, keep=3)
        out: dict[str, Any] = {f"{prefix}{k}": v for k, v in test.items()}
        domains = {d: self.score(method, split)[self.main] for d, split in sorted(task.shifted.items())}
        out[f"{prefix}domains"] = domains
        out[f"{prefix}shifted_mean"] = float(np.mean(list(domains.values()))) if domains else None
        return out

    def _zero_shot(self, runner: Any, task: Any) -> dict[str, Any]:
        key = ("generative-zero-shot", self.name, task.test.key, len(task.test))
        if key not in runner._zero_shot:
            zs = runner._build(ZERO_SHOT, [], [], 0)
            runner._zero_shot[key] = self._scores(zs, task, prefix="zero_shot_")
        return dict(runner._zero_shot[key])

    # ------------------------------------------------------------------- output
    def run_summary(self, runner: Any, cell: Any, metrics: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
        m = metrics
        keys = self.metrics_shown()
        zs = [f"{label} {self.fmt(m.get(f'zero_shot_{k}', m.get(k)))}" for k, label in keys]
        lines = [f"zero-shot {self.title}: " + "  ".join(zs)]
        trained = cell.shots > 0 and bool(m.get("n_train"))  # the frozen captioner (coca) trains on nothing
        if trained:
            got = [f"{label} {self.fmt(m[k])}" for k, label in keys]
            data = f" (all {m['n_train']} training examples)" if m.get("full_data") else f" ({m['n_train']} examples)"
            lines.append(f"adapted{data}: " + "  ".join(got))
        for dom in sorted(m.get("domains") or {}):
            zs_dom = (m.get("zero_shot_domains") or m["domains"]).get(dom)
            line = f"  {dom}: zero-shot {self.fmt(zs_dom)}"
            if trained:
                line += f"  adapted {self.fmt(m['domains'][dom])}"
            lines.append(line + f" ({self.main_label})")
        fields = {k: v for k, v in m.items()}
        fields.setdefault(f"zero_shot_{self.main}", m.get(self.main))
        return lines + self.extra_lines(runner, cell, m) + self.example_lines(m), fields

    def extra_lines(self, runner: Any, cell: Any, metrics: dict[str, Any]) -> list[str]:
        return []

    def example_lines(self, metrics: dict[str, Any]) -> list[str]:
        """A few test outputs, as a person reads them."""
        lines = []
        for prompt, output, reference in metrics.get("examples") or []:
            asked = f"{prompt} -> " if prompt else ""
            lines.append(f"  e.g. {asked}{output!r} (reference {reference!r})")
        return lines

    def metrics_shown(self) -> list[tuple[str, str]]:
        return [(self.main, self.main_label)]

    main_label = ""

    def fmt(self, value: float | None) -> str:
        return _pct(value)

    # ---------------------------------------------------------------- reporting
    def report_sections(self, g: Any) -> list[str]:
        out: list[str] = []
        for protocol in (p.name for p in self.protocols):
            for task in g.tasks(protocol):
                out += [f"## {self.title.capitalize()}: {task}\n\n",
                        f"{self.main_label} on the test split (×100 for CIDEr and BLEU-4); `full` = every training "
                        "example; the shifted column is the mean over the shifted test sets at the largest "
                        "training size.\n\n", self.table(g, task, protocol), "\n"]
        return out

    def table(self, g: Any, task: str, protocol: str) -> str:
        from vlmeft.bench import report

        shots = g.shots(task, protocol)
        top = shots[-1] if shots else 0
        methods = report._by_score(g.methods(task, protocol),
                                   lambda m: report._first(g.stat(m, task, protocol, top, self.main)))
        body = []
        for m in methods:
            star = g.zero_shot_only(m, task, protocol)
            cols = [report.pct(g.stat(m, task, protocol, k, self.main), star=star) for k in shots or [0]]
            shifted = report.pct(g.stat(m, task, protocol, top, "shifted_mean"), star=star)
            body.append([m, *cols, shifted])
        heads = [("full" if k >= FULL else f"{k}-shot") for k in shots] or ["zero-shot"]
        return report._table(["method", *heads, "shifted"], body)

    def headline_columns(self, g: Any) -> list[Column]:
        cols = []
        for protocol in (p.name for p in self.protocols):
            for task in g.tasks(protocol):
                shots = g.shots(task, protocol)
                few = [k for k in shots if k < FULL]
                for k in ([few[-1]] if few else []) + [k for k in shots if k >= FULL]:
                    cols.append(Column(f"{task} {'full' if k >= FULL else f'{k}-shot'} ({self.main_label})", task,
                                       protocol, k, self.main))
        return cols

    # -------------------------------------------------------------- conformance
    def probe_outputs(self, subject: Any, method: Any, *, batch: int | None, raw: Any,
                      expressions: Sequence[str]) -> Any:
        import torch

        images = subject.data.images.to(subject.backbone.device)
        tokens, _ = method.sequences(PROBE_PROMPTS, PROBE_TARGETS)
        step = batch or len(images)
        with torch.no_grad():
            return torch.cat([method.token_logits(tokens[i : i + step, :-1], method.encode_images(images[i : i + step]))
                              for i in range(0, len(images), step)])

    def probe_output_shape(self, subject: Any) -> tuple[tuple[int, ...], str]:
        from vlmeft.conformance.subject import BATCH

        bb = subject.backbone
        width = max(len(bb.encode_words(p)) + len(bb.encode_words(t)) + 2 for p, t in zip(PROBE_PROMPTS, PROBE_TARGETS))
        return (BATCH, width - 1, len(bb.output_ids)), "next-token logits"

    def probe_loss(self, subject: Any, method: Any) -> Any:
        """The training loss on the probe batch (conformance's few SGD steps)."""
        images = subject.data.images.to(subject.backbone.device)
        return method.lm_loss(method.encode_images(images), PROBE_PROMPTS, PROBE_TARGETS)
