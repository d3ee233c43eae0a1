"""Few-shot draws of the CoOp datasets, in the order of the official code, cached as JSON.

:class:`DasslSampler` repeats Dassl's ``generate_fewshot_dataset`` as
CoOp calls it: ``random.seed(seed)`` state (a local ``random.Random``), classes in order
of first appearance in the split, ``random.sample`` of K per class (all of a smaller
class), train then ``min(K, 4)`` val from the same stream. Given the official split
file, the same seed draws the same images as the official code: checked against
Dassl.pytorch c61a1b5's own ``generate_fewshot_dataset`` (run from a scratch copy with
``gdown``/``dassl.utils`` stubbed, ``random.seed(seed)`` first) on the miniature splits of
Caltech101, OxfordPets, SUN397 and a DTD split in shuffled order: 36 draws (seeds 1-3;
1, 2, 4, 16 shots; train and val) identical, image for image. Each draw is cached as
JSON (never pickle) in ``<dataset>/split_fewshot/shot_<K>-seed_<S>-<digest>.json``, the
digest naming the split it was drawn from. Difference: CoOp's ImageNet has no val split
(its val *is* the test set and the last epoch is kept); here ImageNet's val shots are
drawn, after the train shots, from the remaining train images, so selection never sees
test images.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from vlmeft.data.coop._reader import digest
from vlmeft.data.types import Split

FEWSHOT_DIR = "split_fewshot"
VAL_SHOTS_CAP = 4


def dassl_pick(labels: Sequence[int], shots: int, rng: random.Random) -> list[int]:
    """Indices ``generate_fewshot_dataset`` keeps: per class, in order of first
    appearance, ``rng.sample`` of ``shots`` of its items (all of them if fewer)."""
    tracker: dict[int, list[int]] = {}
    for i, y in enumerate(labels):
        tracker.setdefault(int(y), []).append(i)
    chosen: list[int] = []
    for items in tracker.values():
        chosen += rng.sample(items, shots) if len(items) >= shots else items
    return chosen


_warned_read_only: set[Path] = set()


@dataclass(frozen=True)
class DasslSampler:
    """The few-shot draw of the official code, cached as JSON (see the module docstring)."""

    dataset: str
    directory: Path
    train: Split
    val: Split | None  # None: val shots come from the train images left after the train draw
    classnames: tuple[str, ...]

    def _cache_path(self, shots: int, seed: int) -> Path:
        source = digest(self.train.key, self.val.key if self.val is not None else "", len(self.train))[:8]
        return self.directory / FEWSHOT_DIR / f"shot_{shots}-seed_{seed}-{source}.json"

    def draw(self, shots: int, seed: int) -> tuple[Split, Split]:
        from vlmeft.data.protocol import subset

        path = self._cache_path(shots, seed)
        picked = self._read(path)
        if picked is None:
            rng = random.Random(seed)
            train_idx = dassl_pick(self.train.labels, shots, rng)
            if self.val is not None:
                val_idx = dassl_pick(self.val.labels, min(shots, VAL_SHOTS_CAP), rng)
            else:
                taken = set(train_idx)
                rest = [i for i in range(len(self.train)) if i not in taken]
                val_idx = [rest[j] for j in dassl_pick(self.train.labels[rest], min(shots, VAL_SHOTS_CAP), rng)]
            picked = train_idx, val_idx
            self._write(path, shots, seed, *picked)
        tag = f"dassl-{shots}shot-seed{seed}"
        val_pool = self.val if self.val is not None else self.train
        return subset(self.train, picked[0], tag), subset(val_pool, picked[1], f"{tag}-val")

    def without(self, paths: set[str]) -> DasslSampler:
        from vlmeft.data.protocol import subset

        def drop(split: Split | None) -> Split | None:
            if split is None:
                return None
            keep = [i for i, p in enumerate(split.images) if str(p) not in paths]
            tag = "without-" + digest(sorted(paths))[:8]
            return split if len(keep) == len(split.images) else subset(split, keep, tag)

        return replace(self, train=drop(self.train), val=drop(self.val))

    # --------------------------------------------------------------- the cache
    def _entries(self, split: Split, idx: Sequence[int]) -> list[list]:
        return [[str(Path(split.images[i]).relative_to(self.directory)), int(split.labels[i]),
                 self.classnames[int(split.labels[i])]] for i in idx]

    def _write(self, path: Path, shots: int, seed: int, train_idx: list[int], val_idx: list[int]) -> None:
        val_pool = self.val if self.val is not None else self.train
        doc = {"format": "vlmeft few-shot split 1", "dataset": self.dataset, "shots": shots, "seed": seed,
               "sampling": "Dassl generate_fewshot_dataset order (random.Random(seed); train, then val)",
               "train": self._entries(self.train, train_idx), "val": self._entries(val_pool, val_idx)}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".fewshot-", suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(doc, fh, indent=0)
            os.replace(tmp, path)
        except OSError as err:  # a read-only dataset folder: draw again next time
            if path.parent not in _warned_read_only:
                _warned_read_only.add(path.parent)
                print(f"note: few-shot splits are not cached ({err})", file=sys.stderr)
            with contextlib.suppress(OSError, UnboundLocalError):
                os.unlink(tmp)

    def _read(self, path: Path) -> tuple[list[int], list[int]] | None:
        """The cached draw, or None when absent or not matching the split (then drawn again)."""
        if not path.is_file():
            return None
        val_pool = self.val if self.val is not None else self.train
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            out: list[list[int]] = []
            for split, part in ((self.train, "train"), (val_pool, "val")):
                where = {str(Path(p).relative_to(self.directory)): i for i, p in enumerate(split.images)}
                idx = [where[rel] for rel, _, _ in doc[part]]
                if [int(split.labels[i]) for i in idx] != [int(label) for _, label, _ in doc[part]]:
                    raise ValueError("labels differ")
                out.append(idx)
            return out[0], out[1]
        except (OSError, ValueError, KeyError, TypeError):
            print(f"note: ignoring a few-shot cache that does not match the split: {path}", file=sys.stderr)
            return None
