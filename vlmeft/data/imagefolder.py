"""``imagefolder:PATH`` tasks: your own images, in one of three layouts.

1. CoOp-style split file: ``PATH/split_zhou_<Name>.json`` with ``"train"``, ``"val"``
   and ``"test"`` lists of ``[relative_impath, label, classname]``. Paths are relative
   to ``PATH``, to ``PATH/images`` or, for CoOp's own split files, to that dataset's image
   folder (``101_ObjectCategories``, ``2750``, ...; see :mod:`vlmeft.data.coop`, whose
   ``coop:<dataset>`` tasks also give the papers' class names and templates).
2. Split folders: ``PATH/train/<class>/*``, ``PATH/test/<class>/*`` and optionally
   ``PATH/val/<class>/*`` (without val, 20% of train per class becomes val).
3. One folder per class: ``PATH/<class>/*``, split per class 50% train, 20% val, 30%
   test (DTD's proportions in CoOp) with a seeded local RNG.

Class names are folder names with ``_`` read as spaces; labels follow the sorted
folder names. Templates come from ``PATH/templates.txt`` (one per line, each with
``{}``) if present, otherwise ``["a photo of a {}."]``. Images are only listed here;
they are read when used, and a missing or corrupted file is reported by name.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from vlmeft.data.types import ClassificationTask, Split
from vlmeft.errors import VlmeftError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
DEFAULT_TEMPLATES = ["a photo of a {}."]


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def fingerprint(paths: list[Path]) -> str:
    """Changes when any listed file is added, removed, resized or touched (cache keys)."""
    digest = hashlib.sha256()
    for p in paths:
        try:
            st = p.stat()
            digest.update(f"{p}\x1f{st.st_size}\x1f{st.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{p}\x1fmissing\n".encode())
    return digest.hexdigest()[:16]


def _split(root: Path, name: str, paths: list[Path], labels: list[int]) -> Split:
    return Split(images=list(paths), labels=np.asarray(labels, dtype=np.int64),
                 key=f"imagefolder:{root}:{name}:{fingerprint(paths)}")


def _templates(root: Path) -> list[str]:
    path = root / "templates.txt"
    if not path.is_file():
        return list(DEFAULT_TEMPLATES)
    templates = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.count("{}") != 1:
            raise VlmeftError("a template needs exactly one '{}' for the class name", where=f"{path}:{i}")
        templates.append(line)
    if not templates:
        raise VlmeftError("no templates", where=str(path))
    return templates


def _from_split_file(root: Path, split_file: Path) -> ClassificationTask:
    try:
        data = json.loads(split_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise VlmeftError(f"invalid JSON ({err})", where=str(split_file)) from None
    if not isinstance(data, dict):
        raise VlmeftError("expected an object with train/val/test lists", where=str(split_file))
    names: dict[int, str] = {}
    parsed: dict[str, tuple[list[str], list[int]]] = {}
    for part in ("train", "val", "test"):
        entries = data.get(part)
        if not isinstance(entries, list) or not entries:
            raise VlmeftError(f"'{part}' must be a non-empty list of [impath, label, classname]", where=str(split_file))
        rels, labels = [], []
        for i, entry in enumerate(entries):
            where = f"{split_file} {part}[{i}]"
            if not (isinstance(entry, list) and len(entry) == 3 and isinstance(entry[0], str)
                    and isinstance(entry[1], int) and not isinstance(entry[1], bool) and isinstance(entry[2], str)):
                raise VlmeftError("expected [relative_impath, integer label, classname]", where=where)
            rel, label, cname = entry
            if label < 0:
                raise VlmeftError(f"negative label {label}", where=where)
            if names.setdefault(label, cname) != cname:
                raise VlmeftError(f"label {label} is '{cname}' here but '{names[label]}' earlier", where=where)
            rels.append(rel)
            labels.append(label)
        parsed[part] = (rels, labels)
    if sorted(names) != list(range(len(names))):
        raise VlmeftError(f"labels must be 0..{len(names) - 1} without gaps", where=str(split_file))
    first = parsed["train"][0][0]
    bases = [root, root / "images", *_coop_image_dirs(root, split_file.name)]
    base = next((b for b in bases if (b / first).exists()), root)
    splits = {part: _split(root, part, [base / r for r in rels], labels) for part, (rels, labels) in parsed.items()}
    return ClassificationTask(
        name=f"imagefolder:{root}", classnames=[names[i] for i in range(len(names))], templates=_templates(root),
        train=splits["train"], val=splits["val"], test=splits["test"],
        description=f"images under {root}, split by {split_file.name}",
    )


def _coop_image_dirs(root: Path, split_name: str) -> list[Path]:
    """The folder a CoOp split file's paths are relative to (``101_ObjectCategories``, ``2750``, ...)."""
    from vlmeft.data.coop import readers

    return [root / r.image_dir for r in readers().values()
            if getattr(r, "split_file", "") == split_name and getattr(r, "image_dir", "")]


def _list_classes(folder: Path, classes: list[str] | None = None) -> tuple[list[str], list[list[Path]]]:
    dirs = _class_dirs(folder)
    if classes is None:
        classes = [d.name for d in dirs]
    by_name = {d.name: d for d in dirs}
    files = []
    for name in classes:
        if name not in by_name:
            raise VlmeftError(f"class folder '{name}' is missing", where=str(folder / name))
        images = _images_in(by_name[name])
        files.append(images)
    return classes, files


def _from_split_folders(root: Path, seed: int) -> ClassificationTask:
    classes, train_files = _list_classes(root / "train")
    if not classes:
        raise VlmeftError("no class folders", where=str(root / "train"))
    _, test_files = _list_classes(root / "test", classes)
    rng = np.random.default_rng([int(seed), 7])
    parts: dict[str, tuple[list[Path], list[int]]] = {"train": ([], []), "val": ([], []), "test": ([], [])}
    has_val = (root / "val").is_dir()
    val_files = _list_classes(root / "val", classes)[1] if has_val else None
    for label, files in enumerate(train_files):
        if not files:
            raise VlmeftError("class folder holds no images", where=str(root / "train" / classes[label]))
        if has_val:
            train, val = files, val_files[label]
        else:
            order = rng.permutation(len(files))
            n_val = int(round(0.2 * len(files))) if len(files) > 1 else 0
            val = [files[i] for i in sorted(order[:n_val])]
            train = [files[i] for i in sorted(order[n_val:])]
        for part, chosen in (("train", train), ("val", val), ("test", test_files[label])):
            parts[part][0].extend(chosen)
            parts[part][1].extend([label] * len(chosen))
    return _task(root, classes, parts, "train/val/test folders")


def _from_class_folders(root: Path, seed: int) -> ClassificationTask:
    classes, files_per_class = _list_classes(root)
    if len(classes) < 2:
        raise VlmeftError("need at least two class folders (PATH/<class>/<image>)", where=str(root))
    rng = np.random.default_rng([int(seed), 7])
    parts: dict[str, tuple[list[Path], list[int]]] = {"train": ([], []), "val": ([], []), "test": ([], [])}
    for label, files in enumerate(files_per_class):
        if len(files) < 2:
            raise VlmeftError(f"class folder holds {len(files)} image(s); need at least 2 (train and test)",
                              where=str(root / classes[label]))
        order = rng.permutation(len(files))
        n_train = max(1, int(round(0.5 * len(files))))
        n_val = min(int(round(0.2 * len(files))), len(files) - n_train - 1)
        cut = {"train": order[:n_train], "val": order[n_train : n_train + n_val], "test": order[n_train + n_val :]}
        for part, idx in cut.items():
            parts[part][0].extend(files[i] for i in sorted(idx))
            parts[part][1].extend([label] * len(idx))
    return _task(root, classes, parts, "one folder per class, split 50/20/30")


def _task(root: Path, classes: list[str], parts: dict, how: str) -> ClassificationTask:
    splits = {part: _split(root, part, paths, labels) for part, (paths, labels) in parts.items()}
    return ClassificationTask(
        name=f"imagefolder:{root}", classnames=[c.replace("_", " ") for c in classes], templates=_templates(root),
        train=splits["train"], val=splits["val"], test=splits["test"], description=f"images under {root}, {how}",
    )


def load_imagefolder_task(path: str | Path, seed: int = 0) -> ClassificationTask:
    """The task for ``imagefolder:PATH`` (see the module docstring for layouts)."""
    if not str(path).strip():
        raise VlmeftError("expected imagefolder:PATH", where="--task")
    root = Path(path).expanduser().resolve()
    if not root.is_dir():
        raise VlmeftError("image folder does not exist", where=str(root))
    split_files = sorted(root.glob("split_zhou_*.json"))
    if len(split_files) > 1:
        raise VlmeftError(f"several split files ({', '.join(p.name for p in split_files)}); keep one", where=str(root))
    if split_files:
        return _from_split_file(root, split_files[0])
    if (root / "train").is_dir() and (root / "test").is_dir():
        return _from_split_folders(root, seed)
    return _from_class_folders(root, seed)
