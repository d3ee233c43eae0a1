"""Visual question answering: a method writes the answer to a question about an image.

Protocol ``vqa``: train on ``shots`` questions per question type (``--shots full``: every
training question), select on ``min(shots, 4)`` per type of val, answer every test question
greedily (the decoder writes the answer after the question, up to ``max_answer_tokens``)
and score exact matches on normalised answers (:func:`vlmeft.data.vl.vqa_accuracy`: VQA v2's
normalisation; with several reference answers VQA's ``min(#matches / 3, 1)``), on the test
split and on each shifted test set. Every row carries the frozen captioner's zero-shot
accuracy (``coca``) and the trivial baseline, the most common training answer per
question type.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from vlmeft.kinds import Protocol, ref
from vlmeft.kinds._generative import GenerativeKind


class VQA(GenerativeKind):
    name = "vqa"
    label = "visual question answering"
    order = 30
    data = "vqa"
    task_form = "vqa"
    example = "vlmeft run {id} --task world-vqa --shots 16 --seed 1"
    main = "accuracy"
    main_label = "accuracy"
    protocols = (Protocol("vqa", True, "k questions per question type (or full), answer accuracy on the test "
                          "questions and the shifted sets", "accuracy"),)
    metrics = ("accuracy", "per_type", "domains", "shifted_mean", "zero_shot_accuracy", "zero_shot_per_type",
               "zero_shot_domains", "zero_shot_shifted_mean", "majority", "n_train", "full_data")
    observe = staticmethod(ref("vlmeft.conformance.generative:observe"))
    curves = (("vqa", "accuracy", "VQA accuracy"),)

    def score_outputs(self, predictions: Sequence[str], examples: Sequence[Any]) -> dict[str, float]:
        from vlmeft.data.vl import vqa_accuracy

        out: dict[str, Any] = {"accuracy": vqa_accuracy(predictions, examples)}
        groups = sorted({e.group for e in examples})
        out["per_type"] = {g: vqa_accuracy([p for p, e in zip(predictions, examples) if e.group == g],
                                           [e for e in examples if e.group == g]) for g in groups}
        return out

    def max_new(self, config: Any) -> int:
        return int(config.max_answer_tokens)

    def length_setting(self) -> str:
        return "max_answer_tokens"

    def measure(self, runner: Any, cell: Any) -> tuple[dict[str, Any], Any, Any]:
        from vlmeft.data.vl import most_common_answer

        metrics, method, report = super().measure(runner, cell)
        task = runner._task(cell.task)
        metrics["majority"] = most_common_answer(task.train, task.test)["per_type"]
        return metrics, method, report

    def extra_lines(self, runner: Any, cell: Any, m: dict[str, Any]) -> list[str]:
        lines = [f"most common training answer per question type: {self.fmt(m['majority'])}"]
        zs = m.get("zero_shot_per_type") or m["per_type"]
        for t in sorted(m["per_type"]):
            line = f"  {t}: zero-shot {self.fmt(zs[t])}"
            if cell.shots > 0 and m.get("n_train"):
                line += f"  adapted {self.fmt(m['per_type'][t])}"
            lines.append(line)
        return lines


KIND = VQA()
