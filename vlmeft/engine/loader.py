"""Image batches from a split, decoded in worker processes where that pays.

Splits held in memory (the embedded tasks' uint8 arrays, a user's tensors) are sliced in
the calling process: there is nothing to decode. Splits that read files or a user's
``Dataset`` item by item are decoded by a ``torch.utils.data.DataLoader`` with
``workers`` processes when ``workers > 0``:

- the caller fixes the batches (index lists, shuffled by its own seeded generator), and
  the loader returns them in that order, so results do not depend on ``workers``;
- each worker runs the same :func:`~vlmeft.data.loading.load_batch` as the main process;
- on CUDA the batches come in pinned memory, so the copy to the GPU can overlap compute;
- a file that cannot be read comes back as a one-line :class:`VlmeftError` naming it
  (a worker's own exception would arrive wrapped in a multi-line traceback).

``workers=None`` means the process default, which the CLI sets from ``--workers``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from vlmeft.data.loading import Preprocess, load_batch
from vlmeft.data.types import Split
from vlmeft.errors import VlmeftError

_default_workers = 0


def set_default_workers(workers: int) -> None:
    """The number of decoding processes used when a caller passes ``workers=None``."""
    global _default_workers
    _default_workers = check_workers(workers)


def check_workers(workers: int) -> int:
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 0:
        raise VlmeftError(f"workers must be a non-negative integer, got {workers!r}", where="--workers")
    return workers


def decodes_per_item(split: Split) -> bool:
    """Whether loading a batch of ``split`` decodes items one by one (files, a Dataset)."""
    return not isinstance(split.images, (np.ndarray, Tensor))


@dataclass
class _Failure:
    """A worker's :class:`VlmeftError`, sent back as data (see the module notes)."""

    message: str


class _Batches(torch.utils.data.Dataset):
    """Item ``i`` is batch ``i`` of ``batches``, loaded and normalised."""

    def __init__(self, split: Split, batches: Sequence[Sequence[int]], prep: Preprocess) -> None:
        self.split, self.batches, self.prep = split, list(batches), prep

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> Tensor | _Failure:
        try:
            return load_batch(self.split, self.batches[i], self.prep)
        except VlmeftError as err:
            return _Failure(str(err))


def image_batches(split: Split, batches: Sequence[Sequence[int]], prep: Preprocess, *, device: torch.device,
                  workers: int | None = None) -> Iterator[Tensor]:
    """Normalised image tensors ``[B, 3, S, S]`` (on the CPU; pinned when ``device`` is
    CUDA) for each index list in ``batches``, in order."""
    workers = _default_workers if workers is None else check_workers(workers)
    if workers == 0 or len(batches) == 0 or not decodes_per_item(split):
        for idx in batches:
            yield load_batch(split, idx, prep)
        return
    loader = torch.utils.data.DataLoader(_Batches(split, batches, prep), batch_size=None, shuffle=False,
                                         num_workers=min(workers, len(batches)),
                                         pin_memory=torch.device(device).type == "cuda")
    for batch in loader:
        if isinstance(batch, _Failure):
            raise VlmeftError(batch.message)
        yield batch


def chunks(n: int, size: int) -> list[range]:
    """``range(0, n)`` cut into consecutive chunks of ``size``."""
    return [range(i, min(i + size, n)) for i in range(0, n, size)]
