"""Where a run computes, and at what precision: the one place that reads ``--device`` and
``--precision``.

- Devices: ``auto`` (CUDA, else Apple's MPS, else the CPU), ``cpu``, ``cuda``, ``cuda:N``
  and ``mps``. Asking for a device this machine does not have is bad input, never a
  silent fall-back to the CPU.
- Precision is mixed precision by autocast: the frozen weights stay fp32 (no ``.half()``
  anywhere), matrix products run in bf16 or fp16, and losses are computed in fp32. fp16
  trains with a ``torch.amp.GradScaler`` (its 5-bit exponent underflows small gradients
  otherwise); bf16 has fp32's exponent range and needs none, as in open_clip's ``amp_bf16``.
- fp16 on the CPU is refused: CPU autocast is for bf16, and there is no reason to emulate
  half precision there.
"""

from __future__ import annotations

import contextlib
import re

import torch

from vlmeft.errors import VlmeftError

DEVICES = "auto, cpu, cuda, cuda:N or mps"
PRECISIONS = ("fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """The ``torch.device`` for a ``--device`` value; one-line :class:`VlmeftError` for an
    unknown name or a device this machine lacks."""
    if isinstance(spec, torch.device):
        spec = str(spec)
    text = "auto" if spec is None else str(spec).strip().lower()
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    if text == "cpu":
        return torch.device("cpu")
    match = re.fullmatch(r"cuda(?::(\d+))?", text)
    if match:
        if not torch.cuda.is_available():
            raise VlmeftError(f"'{text}' was asked for, but torch {torch.__version__} finds no CUDA device on this "
                              "machine; use --device cpu (or auto)", where="--device")
        count = torch.cuda.device_count()
        index = int(match.group(1)) if match.group(1) is not None else torch.cuda.current_device()
        if index >= count:
            raise VlmeftError(f"there is no cuda:{index}: this machine has {count} CUDA device(s), "
                              f"cuda:0 to cuda:{count - 1}", where="--device")
        return torch.device("cuda", index)
    if text == "mps":
        if not _mps_available():
            raise VlmeftError("'mps' was asked for, but torch finds no Apple GPU (MPS) on this machine; "
                              "use --device cpu (or auto)", where="--device")
        return torch.device("mps")
    raise VlmeftError(f"unknown device '{text}': expected {DEVICES}", where="--device")


def check_precision(precision: str, device: torch.device, where: str = "--precision") -> str:
    """``precision`` if it can run on ``device``; otherwise a one-line :class:`VlmeftError`."""
    if precision not in PRECISIONS:
        raise VlmeftError(f"unknown precision '{precision}': expected {', '.join(PRECISIONS)}", where=where)
    if precision == "fp16" and device.type == "cpu":
        raise VlmeftError("fp16 needs a GPU (CUDA or MPS); on the CPU use bf16 or fp32", where=where)
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise VlmeftError(f"this GPU ({torch.cuda.get_device_name(device)}) has no bf16; use fp16 or fp32",
                          where=where)
    return precision


def choose_precision(requested: str | None, configured: str, device: torch.device) -> tuple[str, str | None]:
    """The precision to run at, and a note for the user when it differs from the config.

    An explicit ``--precision`` must be able to run here (else an error). A precision that
    only comes from a method's config (a paper recipe's fp16) falls back to fp32 on the CPU,
    with a note saying so, so that a recipe written for GPUs still runs on a laptop."""
    if requested is not None:
        return check_precision(requested, device), None
    if configured == "fp16" and device.type == "cpu":
        return "fp32", "note: the config asks for fp16, which needs a GPU; running fp32 on the CPU"
    return check_precision(configured, device, where="config field 'precision'"), None


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Autocast to ``precision`` on ``device`` (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=_DTYPES[precision])


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler | None:
    """A loss scaler for fp16 training, None otherwise."""
    return torch.amp.GradScaler(device.type) if precision == "fp16" else None
