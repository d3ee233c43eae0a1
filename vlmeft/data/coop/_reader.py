"""What every CoOp dataset reader shares: layouts, checks, the Dassl-order few-shot draw.

The layouts are those of CoOp's ``DATASETS.md``; the paths, class lists and class-name
rules follow the official readers (KaiyangZhou/CoOp ``datasets/*.py`` at ff61507, on
Dassl.pytorch c61a1b5), rewritten here:

- :class:`SplitFileDataset`: a ``split_zhou_<Name>.json`` with ``train``/``val``/``test``
  lists of ``[path, label, classname]``, the paths relative to a per-dataset image
  folder (``101_ObjectCategories``, ``images``, ``jpg``, ``2750``, ...; StanfordCars:
  the dataset folder itself).
- :class:`ImageNetFolders` and :class:`VariantFolders`: ImageNet's ``classnames.txt``
  (``wnid name``) plus class folders (ImageNet, -Sketch, -A, -R) or numbered folders
  (ImageNet-V2: folder ``i`` is line ``i`` of ``classnames.txt``).
- FGVCAircraft (its own module): ``variants.txt`` and ``images_variant_*.txt``.

Class names are the papers': the official reader's name (renamed where it renames, e.g.
Caltech's ``Faces`` -> ``face``), with ``_`` read as a space, as CoOp's trainers do
before building prompts. The template is the dataset's entry of CoOp's
``CUSTOM_TEMPLATES`` (``trainers/zsclip.py``).

Few-shot draws in the official order, cached as JSON: :mod:`._fewshot`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vlmeft.data.types import ClassificationTask, Split
from vlmeft.errors import DatasetMissing, VlmeftError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}

Items = list[tuple[str, int]]  # (path relative to the dataset folder, label)


@dataclass
class Parts:
    """What a reader found: raw class names (label order) and the three splits."""

    classnames: list[str]
    train: Items
    val: Items | None  # None: no val split (ImageNet: drawn from train)
    test: Items
    note: str = ""


def clean(name: str) -> str:
    """The class name as CoOp's prompts read it."""
    return name.replace("_", " ")


# ------------------------------------------------------------------------ files
def read_text(path: Path) -> list[str]:
    """The lines of a text file; a missing or unreadable one is an error naming it."""
    if not path.is_file():
        raise VlmeftError("file is missing", where=str(path))
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise VlmeftError(f"cannot read ({err})", where=str(path)) from None


def image_files(folder: Path) -> list[str]:
    """Sorted names of the (non-hidden) image files directly in ``folder``."""
    return sorted(e.name for e in os.scandir(folder)
                  if e.is_file() and not e.name.startswith(".") and Path(e.name).suffix.lower() in IMAGE_SUFFIXES)


def subfolders(folder: Path, ignore: Iterable[str] = ()) -> list[str]:
    """Sorted names of the non-hidden folders in ``folder``."""
    skip = set(ignore)
    return sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith(".") and e.name not in skip)


class ImageIndex:
    """Existence checks for many images at the cost of one directory listing per folder."""

    def __init__(self) -> None:
        self._listed: dict[Path, set[str]] = {}

    def exists(self, path: Path) -> bool:
        parent = path.parent
        if parent not in self._listed:
            try:
                self._listed[parent] = {e.name for e in os.scandir(parent) if e.is_file()}
            except OSError:
                self._listed[parent] = set()
        return path.name in self._listed[parent]


def read_classnames(path: Path) -> dict[str, str]:
    """ImageNet's ``classnames.txt``: ``wnid class name`` per line, in the file's order."""
    out: dict[str, str] = {}
    for i, line in enumerate(read_text(path), start=1):
        if not line.strip():
            continue
        wnid, _, name = line.strip().partition(" ")
        if not name.strip():
            raise VlmeftError(f"expected 'wnid class name', got '{line.strip()[:60]}'", where=f"{path}:{i}")
        if wnid in out:
            raise VlmeftError(f"folder '{wnid}' is listed twice", where=f"{path}:{i}")
        out[wnid] = name.strip()
    if not out:
        raise VlmeftError("no class names", where=str(path))
    return out


def digest(*parts: Any) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(json.dumps(part, separators=(",", ":")).encode())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------------- readers
@dataclass(frozen=True)
class CoopDataset:
    """One dataset of CoOp's suite: where it lives under the data root and how to read it."""

    id: str  # CoOp's config name: --task coop:<id>
    name: str  # the official reader's class name (the CUSTOM_TEMPLATES key)
    folder: str  # its folder under the data root
    template: str  # CoOp's CUSTOM_TEMPLATES entry
    layout: str  # the expected tree under <root>/<folder>, as DATASETS.md draws it
    order: int  # position in the papers' tables
    expects: tuple[str, ...] = ()  # what the folder holds (named when it is not found)
    source: str = ""  # test-only: the dataset the papers train on (ImageNet's variants)
    description: str = ""

    @property
    def task_name(self) -> str:
        return f"coop:{self.id}"

    def locate(self, root: Path) -> Path:
        """The dataset folder; :class:`DatasetMissing` (naming where it looked) when absent."""
        where = Path(root) / self.folder
        if not where.is_dir():
            raise DatasetMissing(f"{self.name} not found (expected {self.folder}/ holding "
                                 f"{', '.join(self.expects) or 'its images'})", where=str(where))
        return where

    def read(self, directory: Path) -> Parts:
        raise NotImplementedError

    def load(self, root: Path) -> ClassificationTask:
        """The task: paths checked, class names cleaned, the CoOp template, the Dassl-order sampler."""
        directory = self.locate(root)
        parts = self.read(directory)
        fingerprint = digest(str(directory), parts.classnames, parts.train, parts.val, parts.test)

        def split(name: str, items: Items) -> Split:
            return Split(images=[directory / rel for rel, _ in items],
                         labels=np.asarray([y for _, y in items], dtype=np.int64),
                         key=f"coop:{self.id}:{name}:{fingerprint}")

        train, test = split("train", parts.train), split("test", parts.test)
        val = split("val", parts.val) if parts.val is not None else train
        from vlmeft.data.coop._fewshot import DasslSampler

        sampler = None if self.source else DasslSampler(
            self.id, directory, train, val if parts.val is not None else None, tuple(parts.classnames))
        return ClassificationTask(
            name=self.task_name, classnames=[clean(c) for c in parts.classnames], templates=[self.template],
            train=train, val=val, test=test, sampler=sampler,
            source=f"coop:{self.source}" if self.source else "",
            description=(f"{self.description} ({len(parts.classnames)} classes; {len(parts.train)} train, "
                         f"{len(parts.val) if parts.val is not None else 0} val, {len(parts.test)} test images"
                         f"{'; ' + parts.note if parts.note else ''}) under {directory}"),
        )


@dataclass(frozen=True)
class SplitFileDataset(CoopDataset):
    """A dataset read through its ``split_zhou_*.json`` (paths relative to ``image_dir``)."""

    split_file: str = ""
    image_dir: str = ""  # "" = the dataset folder itself (StanfordCars)
    # The raw class name the official reader gives an image, from its path relative to
    # image_dir (None: the layout does not tell, e.g. Flowers' flat jpg/ folder).
    classname_of: Callable[[str], str | None] = field(default=lambda rel: None)

    def read(self, directory: Path) -> Parts:
        path = directory / self.split_file
        if not path.is_file():
            raise VlmeftError(f"split file is missing (download {self.split_file} as CoOp's DATASETS.md says)",
                              where=str(path))
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise VlmeftError(f"invalid JSON ({err})", where=str(path)) from None
        if not isinstance(data, dict):
            raise VlmeftError("expected an object with train, val and test lists", where=str(path))
        entries: dict[str, list] = {}
        for part in ("train", "val", "test"):
            value = data.get(part)
            if not isinstance(value, list) or not value:
                raise VlmeftError(f"'{part}' must be a non-empty list of [impath, label, classname]", where=str(path))
            entries[part] = value
        return self._check(directory, path, entries)

    def _check(self, directory: Path, path: Path, entries: dict[str, list]) -> Parts:
        base = directory / self.image_dir if self.image_dir else directory
        names: dict[int, str] = {}
        labels_of: dict[str, int] = {}
        for part, items in entries.items():
            for i, entry in enumerate(items):
                where = f"{path} {part}[{i}]"
                if not (isinstance(entry, list) and len(entry) == 3 and isinstance(entry[0], str) and entry[0]
                        and isinstance(entry[1], int) and not isinstance(entry[1], bool) and isinstance(entry[2], str)):
                    raise VlmeftError("expected [relative image path, integer label, class name]", where=where)
                _, label, cname = entry
                if names.setdefault(label, cname) != cname:
                    raise VlmeftError(f"label {label} is '{cname}' here but '{names[label]}' earlier", where=where)
                if labels_of.setdefault(cname, label) != label:
                    raise VlmeftError(f"class '{cname}' has label {label} here but {labels_of[cname]} earlier",
                                      where=where)
        n = len(names)
        index = ImageIndex()
        out: dict[str, Items] = {}
        for part, items in entries.items():
            rows: Items = []
            for i, (rel, label, cname) in enumerate(items):
                where = f"{path} {part}[{i}]"
                if not 0 <= label < n:
                    raise VlmeftError(f"label {label} is out of range 0..{n - 1} ({n} classes)", where=where)
                expected = self.classname_of(rel)
                if expected is not None and expected != cname:
                    raise VlmeftError(f"class name '{cname}' does not match the image's folder: {rel} belongs to "
                                      f"'{expected}'", where=where)
                if ".." in Path(rel).parts or Path(rel).is_absolute():
                    raise VlmeftError(f"image path '{rel}' leaves {base}", where=where)
                image = base / rel
                if not index.exists(image):
                    raise VlmeftError(f"image {image} does not exist", where=where)
                rows.append((str(image.relative_to(directory)), label))
            out[part] = rows
        return Parts([names[i] for i in range(n)], out["train"], out["val"], out["test"])


@dataclass(frozen=True)
class ImageNetFolders(CoopDataset):
    """ImageNet: ``classnames.txt`` plus ``images/train/<wnid>/`` and ``images/val/<wnid>/``;
    labels follow the sorted train folders (as the official reader enumerates them)."""

    def read(self, directory: Path) -> Parts:
        names_file = directory / "classnames.txt"
        names = read_classnames(names_file)
        train_dir, val_dir = directory / "images" / "train", directory / "images" / "val"
        folders = subfolders(train_dir)
        if not folders:
            raise VlmeftError("no class folders", where=str(train_dir))
        for wnid in folders:
            if wnid not in names:
                raise VlmeftError(f"class folder '{wnid}' has no class name in {names_file}", where=str(train_dir / wnid))
        label = {w: i for i, w in enumerate(folders)}
        val_folders = subfolders(val_dir)
        for wnid in val_folders:
            if wnid not in label:
                raise VlmeftError(f"val folder '{wnid}' is not a train class folder (class names of train and val "
                                  "must match)", where=str(val_dir / wnid))
        train = [(f"images/train/{w}/{f}", label[w]) for w in folders for f in image_files(train_dir / w)]
        test = [(f"images/val/{w}/{f}", label[w]) for w in val_folders for f in image_files(val_dir / w)]
        return Parts([names[w] for w in folders], train, None, test)


@dataclass(frozen=True)
class VariantFolders(CoopDataset):
    """An ImageNet test set: ``classnames.txt`` plus one folder per class under ``image_dir``.

    ``numbered``: folders are ``0..C-1``, indices into ``classnames.txt`` (ImageNet-V2).
    ``wnids_file``: the official class subset, in order (ImageNet-A and -R: 200 wnids);
    otherwise the classes are the sorted folders (ImageNet-Sketch)."""

    image_dir: str = ""
    numbered: bool = False
    wnids_file: str = ""  # a file next to this module
    ignore: tuple[str, ...] = ()  # entries of image_dir that are not classes (README.txt)

    def read(self, directory: Path) -> Parts:
        names_file = directory / "classnames.txt"
        names = read_classnames(names_file)
        root = directory / self.image_dir
        folders = subfolders(root, self.ignore)
        if not folders:
            raise VlmeftError("no class folders", where=str(root))
        note = ""
        if self.numbered:
            wnids = list(names)
            for folder in folders:
                if not folder.isdigit() or not 0 <= int(folder) < len(wnids):
                    raise VlmeftError(f"folder '{folder}' is not a label index 0..{len(wnids) - 1} "
                                      f"(lines of {names_file})", where=str(root / folder))
            label = {f: int(f) for f in folders}
        else:
            if self.wnids_file:
                wnids = read_text(Path(__file__).with_name(self.wnids_file))
                official = set(wnids)
                for folder in folders:
                    if folder not in official:
                        raise VlmeftError(f"class folder '{folder}' is not one of the {len(wnids)} {self.name} classes",
                                          where=str(root / folder))
                if len(folders) < len(wnids):
                    note = f"{len(folders)} of the {len(wnids)} class folders present"
            else:
                wnids = folders
            for wnid in wnids:
                if wnid not in names:
                    raise VlmeftError(f"class '{wnid}' has no class name", where=str(names_file))
            label = {w: i for i, w in enumerate(wnids) if w in set(folders)}
        items = [(f"{self.image_dir}/{f}/{name}", label[f]) for f in folders for name in image_files(root / f)]
        return Parts([names[w] for w in wnids], items, items, items, note)
