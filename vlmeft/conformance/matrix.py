"""The matrix generator: knowledge base and registry in, (row, check, backbone) cases and cells out.

Rows come from data, never from a hand-written list: every record whose
``implementation`` is its *own* code (fidelity ``faithful`` or ``simplified``) gets one
row per check and backbone, plus one row per conformance variant its class declares
(``conformance_variants``: configs that switch the mechanism, such as shallow VPT or
CALIP-FS), labelled ``<id>:<variant>``. Records with fidelity ``category-reference`` run no
code of their own (they borrow their leaf's reference implementation), so they get no
rows of their own: :func:`shared_records` lists them and the report shows which cells
they share. A registered method without a record (a third-party entry point, a test's
mutant) gets rows when asked for by id; its category is the one its class declares.

Columns: one ``signature.<key>`` check per key of the leaf signature (see
:mod:`.signatures`, and :mod:`.generative` for VQA and captioning methods) and the
generic checks of :mod:`.checks`. Backbones: each row's task kind may declare its own
(``conformance_backbones``; the generative methods run on captioners); the others use
:data:`DEFAULT_BACKBONES`.

A method whose module is missing or does not import fails every cell; it is never
skipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from vlmeft import kinds, registry
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
class Row:
    """One row of the matrix: a method (in one config) to probe."""

    label: str  # the row's name: the record / registry id, or "<id>:<variant>"
    impl: str  # registry id of the code that runs
    record: str | None = None  # the knowledge-base record, if the method has one
    variant: str = ""
    overrides: tuple[tuple[str, str], ...] = ()  # the variant's settings (``--set`` strings)


@dataclass(frozen=True)
class Case:
    method: str  # the row label (== record id for a default row)
    check: str
    backbone: str
    row: Row | None = None  # None: a default row of record ``method`` (filled in by :func:`cases`)

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
    """Records that link to their own implementation: the default rows."""
    return [r for _, r in sorted(kb.methods.items())
            if r.implementation is not None and r.implementation.fidelity != "category-reference"]


def shared_records(kb: Any) -> list[tuple[str, str]]:
    """``(record id, reference implementation id)`` for category-reference records."""
    return [(r.id, r.implementation.id) for _, r in sorted(kb.methods.items())
            if r.implementation is not None and r.implementation.fidelity == "category-reference"]


def declared_variants(impl: str) -> dict[str, dict[str, str]]:
    """The ``conformance_variants`` declared in the class body of ``impl`` (not inherited:
    a subclass's Config may lack the fields). A module that does not import has none here;
    its default row fails with the import error."""
    try:
        cls = registry.get(impl)
    except Exception:  # noqa: BLE001 (reported by every cell of the default row)
        return {}
    return dict(cls.__dict__.get("conformance_variants", {}))


def _rows_of(label: str, impl: str, record: str | None) -> list[Row]:
    out = [Row(label, impl, record)]
    for variant, settings in sorted(declared_variants(impl).items()):
        out.append(Row(f"{label}:{variant}", impl, record, variant, tuple(sorted(settings.items()))))
    return out


def rows(kb: Any, methods: Iterable[str] | None = None) -> list[Row]:
    """The matrix rows: every record with its own code and its variants; with ``methods``,
    only those (a record id brings its variants; ``id:variant`` one variant; a registered
    id without a record is probed against the category its class declares)."""
    own = {r.id: r.implementation.id for r in own_records(kb)}
    if methods is None:
        return [row for rec_id, impl in own.items() for row in _rows_of(rec_id, impl, rec_id)]
    wanted = list(dict.fromkeys(methods))
    unknown = [m for m in wanted
               if m.split(":", 1)[0] not in kb.methods and not registry.is_registered(m.split(":", 1)[0])]
    if unknown:
        raise VlmeftError(f"unknown method record(s) or registry id(s): {', '.join(unknown)}", where="--method")
    borrowed = [m for m in wanted if m.split(":", 1)[0] in kb.methods and m.split(":", 1)[0] not in own]
    if borrowed:
        raise VlmeftError(f"{', '.join(borrowed)} has no implementation of its own (category-reference or none); "
                          "its cells are its reference implementation's", where="--method")
    out: list[Row] = []
    for m in wanted:
        base, _, variant = m.partition(":")
        found = _rows_of(base, own[base], base) if base in own else _rows_of(base, base, None)
        if variant:
            found = [r for r in found if r.variant == variant]
            if not found:
                known = ", ".join(declared_variants(own.get(base, base))) or "none"
                raise VlmeftError(f"'{base}' declares no conformance variant '{variant}' (variants: {known})",
                                  where="--method")
        out += [r for r in found if r not in out]
    return out


def row_backbones(row: Row, backbones: Sequence[str] | None = None) -> tuple[str, ...]:
    """Where a row is probed: ``backbones`` when given; else the backbones its task kind
    declares (``conformance_backbones``: the captioners for VQA and captioning methods), or
    :data:`DEFAULT_BACKBONES`. A module that does not import keeps the default."""
    if backbones is not None:
        return tuple(backbones)
    try:
        declared = kinds.of_method(registry.get(row.impl)).conformance_backbones
    except Exception:  # noqa: BLE001 (its cells report the import error)
        declared = ()
    return tuple(declared) or DEFAULT_BACKBONES


def cases(kb: Any, backbones: Sequence[str] | None = None, methods: Iterable[str] | None = None) -> Iterator[Case]:
    """Every (row, check, backbone) of the matrix, in a stable order (``backbones`` None:
    each row on its kind's backbones, see :func:`row_backbones`)."""
    for row in rows(kb, methods):
        for backbone in row_backbones(row, backbones):
            for check in CHECKS:
                yield Case(row.label, check, backbone, row)


class Matrix:
    """Computes cells, sharing backbones, probe data and observations between them."""

    def __init__(self, kb: Any, *, device: str = "cpu") -> None:
        self.kb = kb
        self.device = device
        self._backbones: dict[str, tuple[Backbone | None, str]] = {}
        self._pristine: dict[str, dict[str, torch.Tensor]] = {}
        self._subjects: dict[tuple[str, str], Subject] = {}
        self._observations: dict[tuple[str, str], dict] = {}
        self._data: dict[str, ProbeData] = {}
        self._last_row: str | None = None

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
            self._pristine[name] = {k: v.detach().clone() for k, v in bb.model.state_dict().items()}
        return self._backbones[name]

    def backbone_notes(self) -> dict[str, str]:
        return {name: note for name, (_, note) in self._backbones.items()}

    def _restore_backbones(self, *, values: bool) -> None:
        """Every cell starts from the frozen backbone: no gradient, no trainable flag and
        (checked whenever the row changes) the loaded weights, whatever a method under
        test did to them (the ``frozen_backbone`` check reports that; no other cell may
        inherit it)."""
        for name, (bb, _) in self._backbones.items():
            if bb is None:
                continue
            for p in bb.model.parameters():
                if p.requires_grad or p.grad is not None:
                    p.requires_grad_(False)
                    p.grad = None
            if values:
                state = bb.model.state_dict()
                pristine = self._pristine[name]
                if any(not torch.equal(state[k], v) for k, v in pristine.items()):
                    bb.model.load_state_dict(pristine)

    def count_backbone(self) -> Backbone:
        """The random-init ViT-B/16 for parameter counts: built once per process (it is
        the most expensive object of the run) and shared by every matrix."""
        key = (COUNT_BACKBONE, self.device)
        if key not in _SHARED_COUNT_BACKBONE:
            _SHARED_COUNT_BACKBONE[key] = load_backbone(COUNT_BACKBONE, None, device=self.device)
        return _SHARED_COUNT_BACKBONE[key]

    # --------------------------------------------------------------- subjects
    def _subject(self, row: Row, name: str, bb: Backbone) -> Subject:
        key = (row.label, name)
        if key not in self._subjects:
            if name not in self._data:
                self._data[name] = ProbeData.for_backbone(bb)
            self._subjects[key] = Subject(row.impl, bb, self._data[name], dict(row.overrides), variant=row.variant)
        return self._subjects[key]

    def _observation(self, subject: Subject, name: str) -> dict:
        key = (subject.label, name)
        if key not in self._observations:
            with torch.random.fork_rng():
                self._observations[key] = observe(subject)
        return self._observations[key]

    @staticmethod
    def _import(impl: str) -> tuple[type | None, str]:
        """The method class, or None and why it cannot be imported (a failed cell, never a skip)."""
        try:
            return registry.get(impl), ""
        except ModuleNotFoundError as err:
            return None, f"module {err.name or impl} is missing: {err}"
        except Exception as err:  # noqa: BLE001 (a broken module is a failed cell)
            return None, f"import failed: {type(err).__name__}: {err}"

    def _row(self, case: Case) -> Row:
        if case.row is not None:
            return case.row
        rec = self.kb.methods[case.method]
        return Row(case.method, rec.implementation.id, case.method)

    def category(self, row: Row, cls: type) -> str | None:
        """The leaf a row is judged against: its record's, or (no record) its class's."""
        if row.record is not None:
            return self.kb.methods[row.record].category
        declared = getattr(cls, "category", None)
        return None if declared in (None, "baseline") else declared

    # ------------------------------------------------------------------ cells
    def cell(self, case: Case) -> Cell:
        def out(status: str, reason: str) -> Cell:
            return Cell(case.method, case.check, case.backbone, status, reason)

        row = self._row(case)
        rec = self.kb.methods.get(row.record) if row.record is not None else None
        cls, why = self._import(row.impl)
        if cls is None:
            return out("fail", why)
        bb, note = self.backbone(case.backbone)
        if bb is None:
            return out("fail", f"backbone could not be built: {note}")
        if cls.requires_vision_tokens and not bb.is_vit:
            return out("na", f"needs vision tokens; {case.backbone} has a ResNet image tower")
        if kinds.generates(cls) and not getattr(bb, "is_captioner", False):
            return out("na", f"generates text; {case.backbone} has no text decoder (a captioner such as synthcoca-tiny)")
        self._restore_backbones(values=row.label != self._last_row)
        self._last_row = row.label
        try:
            subject = self._subject(row, case.backbone, bb)
            with torch.random.fork_rng():
                if case.check.startswith("signature."):
                    category = self.category(row, cls)
                    return out(*self._signature_cell(case.check.split(".", 1)[1], category, subject, case.backbone))
                ctx = CheckContext(subject, rec, self.count_backbone)
                return out(*GENERIC_CHECKS[case.check](ctx))
        except Exception as err:  # noqa: BLE001 (any crash is a failed cell, with its message)
            first = str(err).strip().splitlines()[0] if str(err).strip() else ""
            return out("fail", f"{type(err).__name__}: {first}"[:300])
        finally:
            self._restore_backbones(values=False)

    def _signature_cell(self, key: str, category: str | None, subject: Subject, name: str) -> tuple[str, str]:
        if not category:
            return "na", "baseline: no taxonomy leaf, so no signature"
        leaf = self.kb.categories.leaf(category)
        if getattr(leaf.signature, key) == "na":  # nothing to observe
            return judge(key, category, leaf.signature, subject.cls, None)
        return judge(key, category, leaf.signature, subject.cls, self._observation(subject, name).get(key))

    def run(self, todo: Iterable[Case]) -> list[Cell]:
        return [self.cell(c) for c in todo]


def run_matrix(kb: Any, backbones: Sequence[str] | None = None, methods: Iterable[str] | None = None,
               *, device: str = "cpu") -> tuple[list[Cell], dict[str, str]]:
    """All cells, and a note per backbone on its weights."""
    torch.set_grad_enabled(True)
    matrix = Matrix(kb, device=device)
    cells = matrix.run(cases(kb, backbones, methods))
    return cells, matrix.backbone_notes()


def variants(kb: Any, methods: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
    """Row label -> the record/registry id and settings of every variant row (for the report)."""
    return {r.label: {"method": r.record or r.impl, "settings": dict(r.overrides)}
            for r in rows(kb, methods) if r.variant}
