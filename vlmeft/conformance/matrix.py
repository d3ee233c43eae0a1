"""The matrix generator: knowledge base in, (record, check, backbone) cases and cells out.

Rows come from the knowledge base, never from a hand-written list: every record whose
``implementation`` is its *own* code (fidelity ``faithful`` or ``simplified``) gets one
row per check and backbone. Records with fidelity ``category-reference`` run no code of
their own (they borrow their leaf's reference implementation), so they get no rows of
their own: :func:`shared_records` lists them and the report shows which cells they share.

Columns: one ``signature.<key>`` check per key of the record's leaf signature (see
:mod:`.signatures`) and the generic checks of :mod:`.checks`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from vlmeft import registry
from vlmeft.backbone import load_backbone
from vlmeft.backbone.wrapper import Backbone
from vlmeft.conformance.checks import COUNT_BACKBONE, GENERIC_CHECKS, CheckContext
from vlmeft.conformance.signatures import SIGNATURE_KEYS, judge, observe
from vlmeft.conformance.subject import ProbeData, Subject
from vlmeft.errors import VlmeftError

DEFAULT_BACKBONES: tuple[str, ...] = ("synthclip-tiny", "vlmeft-tiny-vit", "vlmeft-tiny-rn")
SIGNATURE_CHECKS: tuple[str, ...] = tuple(f"signature.{k}" for k in SIGNATURE_KEYS)
CHECKS: tuple[str, ...] = SIGNATURE_CHECKS + tuple(GENERIC_CHECKS)
STATUSES = ("pass", "fail", "na")
_SHARED_COUNT_BACKBONE: dict[tuple[str, str], Backbone] = {}


@dataclass(frozen=True)
class Case:
    method: str  # record id (== implementation id for rows)
    check: str
    backbone: str

    @property
    def id(self) -> str:
        return f"{self.method}|{self.check}|{self.backbone}"


@dataclass(frozen=True)
class Cell:
    method: str
    check: str
    backbone: str
    status: str  # pass | fail | na
    reason: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def own_records(kb: Any) -> list[Any]:
    """Records that link to their own implementation: the matrix rows."""
    return [r for _, r in sorted(kb.methods.items())
            if r.implementation is not None and r.implementation.fidelity != "category-reference"]


def shared_records(kb: Any) -> list[tuple[str, str]]:
    """``(record id, reference implementation id)`` for category-reference records."""
    return [(r.id, r.implementation.id) for _, r in sorted(kb.methods.items())
            if r.implementation is not None and r.implementation.fidelity == "category-reference"]


def cases(kb: Any, backbones: Sequence[str] = DEFAULT_BACKBONES, methods: Iterable[str] | None = None) -> Iterator[Case]:
    """Every (record, check, backbone) of the matrix, in a stable order."""
    wanted = set(methods) if methods is not None else None
    for rec in own_records(kb):
        if wanted is not None and rec.id not in wanted:
            continue
        for backbone in backbones:
            for check in CHECKS:
                yield Case(rec.id, check, backbone)


class Matrix:
    """Computes cells, sharing backbones, probe data and observations between them."""

    def __init__(self, kb: Any, *, device: str = "cpu") -> None:
        self.kb = kb
        self.device = device
        self._backbones: dict[str, tuple[Backbone | None, str]] = {}
        self._subjects: dict[tuple[str, str], Subject] = {}
        self._observations: dict[tuple[str, str], dict] = {}
        self._data: dict[str, ProbeData] = {}

    # ------------------------------------------------------------- backbones
    def backbone(self, name: str) -> tuple[Backbone | None, str]:
        """The shared backbone and a note on its weights (or None and why it failed)."""
        if name not in self._backbones:
            try:
                bb = load_backbone(name, "default", device=self.device)
                note = f"weights {bb.weights_id}" if bb.pretrained else "random init"
            except VlmeftError as err:
                if name != "synthclip-tiny":
                    self._backbones[name] = (None, str(err))
                    return self._backbones[name]
                # The architecture still exercises every probe; say that it is untrained.
                bb = load_backbone(name, None, device=self.device)
                note = f"random init (shipped weights unavailable: {err})"
            self._backbones[name] = (bb, note)
        return self._backbones[name]

    def backbone_notes(self) -> dict[str, str]:
        return {name: note for name, (_, note) in self._backbones.items()}

    def count_backbone(self) -> Backbone:
        """The random-init ViT-B/16 for parameter counts: built once per process (it is
        the most expensive object of the run) and shared by every matrix."""
        key = (COUNT_BACKBONE, self.device)
        if key not in _SHARED_COUNT_BACKBONE:
            _SHARED_COUNT_BACKBONE[key] = load_backbone(COUNT_BACKBONE, None, device=self.device)
        return _SHARED_COUNT_BACKBONE[key]

    # --------------------------------------------------------------- subjects
    def _subject(self, impl: str, name: str, bb: Backbone) -> Subject:
        key = (impl, name)
        if key not in self._subjects:
            if name not in self._data:
                self._data[name] = ProbeData.for_backbone(bb)
            self._subjects[key] = Subject(impl, bb, self._data[name])
        return self._subjects[key]

    def _observation(self, subject: Subject, name: str) -> dict:
        key = (subject.method_id, name)
        if key not in self._observations:
            with torch.random.fork_rng():
                self._observations[key] = observe(subject)
        return self._observations[key]

    @staticmethod
    def _import(impl: str) -> tuple[type | None, str]:
        """The method class, or None and why it cannot be imported."""
        try:
            return registry.get(impl), ""
        except ModuleNotFoundError as err:
            if err.name and err.name.startswith("vlmeft.methods"):
                return None, f"not implemented yet (module {err.name} is missing)"
            return None, f"import failed: {err}"
        except Exception as err:  # noqa: BLE001 (a broken module is a failed cell)
            return None, f"import failed: {type(err).__name__}: {err}"

    # ------------------------------------------------------------------ cells
    def cell(self, case: Case) -> Cell:
        def out(status: str, reason: str) -> Cell:
            return Cell(case.method, case.check, case.backbone, status, reason)

        rec = self.kb.methods[case.method]
        impl = rec.implementation.id
        cls, why = self._import(impl)
        if cls is None:
            return out("na" if why.startswith("not implemented") else "fail", why)
        bb, note = self.backbone(case.backbone)
        if bb is None:
            return out("fail", f"backbone could not be built: {note}")
        if cls.requires_vision_tokens and not bb.is_vit:
            return out("na", f"needs vision tokens; {case.backbone} has a ResNet image tower")
        subject = self._subject(impl, case.backbone, bb)
        try:
            with torch.random.fork_rng():
                if case.check.startswith("signature."):
                    return out(*self._signature_cell(case.check.split(".", 1)[1], rec, subject, case.backbone))
                ctx = CheckContext(subject, rec, self.count_backbone)
                return out(*GENERIC_CHECKS[case.check](ctx))
        except Exception as err:  # noqa: BLE001 (any crash is a failed cell, with its message)
            first = str(err).strip().splitlines()[0] if str(err).strip() else ""
            return out("fail", f"{type(err).__name__}: {first}"[:300])

    def _signature_cell(self, key: str, rec: Any, subject: Subject, name: str) -> tuple[str, str]:
        if not rec.category:
            return "na", "baseline: no taxonomy leaf, so no signature"
        leaf = self.kb.categories.leaf(rec.category)
        if getattr(leaf.signature, key) == "na":  # nothing to observe
            return judge(key, rec.category, leaf.signature, subject.cls, None)
        return judge(key, rec.category, leaf.signature, subject.cls, self._observation(subject, name).get(key))

    def run(self, todo: Iterable[Case]) -> list[Cell]:
        return [self.cell(c) for c in todo]


def run_matrix(kb: Any, backbones: Sequence[str] = DEFAULT_BACKBONES, methods: Iterable[str] | None = None,
               *, device: str = "cpu") -> tuple[list[Cell], dict[str, str]]:
    """All cells, and a note per backbone on its weights."""
    torch.set_grad_enabled(True)
    matrix = Matrix(kb, device=device)
    wanted = list(methods) if methods is not None else None
    if wanted is not None:
        unknown = [m for m in wanted if m not in kb.methods]
        if unknown:
            raise VlmeftError(f"unknown method record(s): {', '.join(unknown)}", where="--method")
        refs = {r.id for r in own_records(kb)}
        borrowed = [m for m in wanted if m not in refs]
        if borrowed:
            raise VlmeftError(f"{', '.join(borrowed)} has no implementation of its own (category-reference or none); "
                              "its cells are its reference implementation's", where="--method")
    cells = matrix.run(cases(kb, backbones, wanted))
    return cells, matrix.backbone_notes()
