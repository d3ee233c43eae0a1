"""A miniature fabricated copy of every CoOp dataset layout (CoOp's ``DATASETS.md``).

Written from the documented layouts and official split formats, not from the readers'
code, so the reader tests check one against the other. Four classes per dataset (so
base-to-novel splits 2 + 2), a few tiny generated JPEGs per class, real folder and
class names (with the official renamings: Caltech's ``Faces`` -> ``face``, EuroSAT's
``SeaLake`` -> ``Sea or Lake``, SUN397's ``b/bakery/shop`` -> ``shop bakery``, ...).

:data:`EXPECTED` records what a correct reader must return for each dataset: class
names as the papers' prompts read them, split sizes, the template.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

N_TRAIN, N_VAL, N_TEST = 3, 2, 2  # images per class in split-file datasets

IMAGENET = {  # wnid -> name; the train classes of the miniature ImageNet
    "n01440764": "tench", "n01443537": "goldfish", "n01484850": "great white shark", "n01498041": "stingray",
}
A_PRESENT = ["n01498041", "n01531178", "n01534433"]  # three of ImageNet-A's 200 classes
R_PRESENT = ["n01443537", "n01484850", "n01494475"]  # three of ImageNet-R's 200 classes

_rng = np.random.default_rng(0)


def _image(path: Path, label: int, fmt: str = "JPEG") -> None:
    """A tiny image whose colour says its class (plus noise), of a non-square size."""
    path.parent.mkdir(parents=True, exist_ok=True)
    colour = np.array([[200, 40, 40], [40, 180, 60], [50, 60, 210], [220, 200, 40]][label % 4], dtype=np.float64)
    arr = np.clip(colour + _rng.normal(0, 25, (10, 14, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(arr).save(path, format=fmt)


def _split_file(path: Path, entries: dict[str, list]) -> None:
    path.write_text(json.dumps(entries, indent=1), encoding="utf-8")


def _classes_with_folders(ds: Path, image_dir: str, split_name: str, folders: list[tuple[str, str]],
                          file_of=lambda folder, i: f"{folder}_{i:04d}.jpg") -> None:  # noqa: ANN001
    """Class folders ``image_dir/<folder>/`` and a split file naming each class ``name``."""
    entries: dict[str, list] = {"train": [], "val": [], "test": []}
    for label, (folder, name) in enumerate(folders):
        i = 0
        for part, n in (("train", N_TRAIN), ("val", N_VAL), ("test", N_TEST)):
            for _ in range(n):
                i += 1
                rel = f"{folder}/{file_of(folder, i)}"
                _image(ds / image_dir / rel, label)
                entries[part].append([rel, label, name])
    _split_file(ds / split_name, entries)


def _flat(ds: Path, image_dir: str, split_name: str, names: list[str], file_of) -> None:  # noqa: ANN001
    """Images in one folder (no class folders) and a split file."""
    entries: dict[str, list] = {"train": [], "val": [], "test": []}
    k = 0
    for label, name in enumerate(names):
        for part, n in (("train", N_TRAIN), ("val", N_VAL), ("test", N_TEST)):
            for _ in range(n):
                k += 1
                rel = file_of(name, k, part)
                _image(ds / image_dir / rel if image_dir else ds / rel, label)
                entries[part].append([rel, label, name])
    _split_file(ds / split_name, entries)


def build(root: Path) -> Path:
    """Write every dataset under ``root`` (the data root); returns ``root``."""
    root = Path(root)
    # Caltech101: the official reader sorts folders (upper case first), skips two, renames four.
    ds = root / "caltech-101"
    _classes_with_folders(ds, "101_ObjectCategories", "split_zhou_Caltech101.json",
                          [("Faces", "face"), ("accordion", "accordion"), ("airplanes", "airplane"),
                           ("yin_yang", "yin_yang")], file_of=lambda f, i: f"image_{i:04d}.jpg")
    _image(ds / "101_ObjectCategories" / "BACKGROUND_Google" / "image_0001.jpg", 0)
    # OxfordPets: flat images/, breed = image name without its number, lower case.
    ds = root / "oxford_pets"
    (ds / "annotations").mkdir(parents=True)
    breeds = {"abyssinian": "Abyssinian", "american_bulldog": "american_bulldog", "bengal": "Bengal",
              "yorkshire_terrier": "yorkshire_terrier"}
    _flat(ds, "images", "split_zhou_OxfordPets.json", list(breeds), lambda name, k, part: f"{breeds[name]}_{k}.jpg")
    # StanfordCars: paths relative to the dataset folder itself.
    ds = root / "stanford_cars"
    (ds / "devkit").mkdir(parents=True)
    _flat(ds, "", "split_zhou_StanfordCars.json",
          ["2012 Tesla Model S", "2012 BMW M3 coupe", "2007 Hyundai Elantra Sedan", "1993 Geo Metro Convertible"],
          lambda name, k, part: f"{'cars_test' if part == 'test' else 'cars_train'}/{k:05d}.jpg")
    # Flowers102: flat jpg/.
    ds = root / "oxford_flowers"
    _flat(ds, "jpg", "split_zhou_OxfordFlowers.json",
          ["pink primrose", "hard-leaved pocket orchid", "canterbury bells", "sweet pea"],
          lambda name, k, part: f"image_{k:05d}.jpg")
    (ds / "cat_to_name.json").write_text(json.dumps({"1": "pink primrose"}), encoding="utf-8")
    # Food101: class folders = class names.
    _classes_with_folders(root / "food-101", "images", "split_zhou_Food101.json",
                          [(n, n) for n in ("apple_pie", "baby_back_ribs", "baklava", "beef_carpaccio")],
                          file_of=lambda f, i: f"{1000 + i}.jpg")
    # FGVCAircraft: variants.txt and images_variant_*.txt, no split file.
    ds = root / "fgvc_aircraft"
    variants = ["707-320", "A300B4", "Cessna 172", "F/A-18"]
    (ds / "images").mkdir(parents=True)
    (ds / "variants.txt").write_text("\n".join(variants) + "\n", encoding="utf-8")
    k = 1000000
    lists: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for label, variant in enumerate(variants):
        for part, n in (("train", N_TRAIN), ("val", N_VAL), ("test", N_TEST)):
            for _ in range(n):
                k += 1
                _image(ds / "images" / f"{k}.jpg", label)
                lists[part].append(f"{k} {variant}")
    for part, lines in lists.items():
        (ds / f"images_variant_{part}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    # SUN397: class = path below the letter, words reversed.
    _classes_with_folders(root / "sun397", "SUN397", "split_zhou_SUN397.json",
                          [("a/abbey", "abbey"), ("a/airport_terminal", "airport_terminal"),
                           ("b/bakery/shop", "shop bakery"), ("c/church/outdoor", "outdoor church")],
                          file_of=lambda f, i: f"sun_{i:06d}.jpg")
    # DTD.
    ds = root / "dtd"
    _classes_with_folders(ds, "images", "split_zhou_DescribableTextures.json",
                          [(n, n) for n in ("banded", "blotchy", "braided", "bubbly")])
    (ds / "imdb").mkdir()
    (ds / "labels").mkdir()
    # EuroSAT: renamed classes.
    _classes_with_folders(root / "eurosat", "2750", "split_zhou_EuroSAT.json",
                          [("AnnualCrop", "Annual Crop Land"), ("Forest", "Forest"), ("Highway", "Highway or Road"),
                           ("SeaLake", "Sea or Lake")], file_of=lambda f, i: f"{f}_{i}.jpg")
    # UCF101: middle frames; folders are actions with "_" between words.
    _classes_with_folders(root / "ucf101", "UCF-101-midframes", "split_zhou_UCF101.json",
                          [(n, n) for n in ("Apply_Eye_Makeup", "Apply_Lipstick", "Archery", "Baby_Crawling")],
                          file_of=lambda f, i: f"v_{f.replace('_', '')}_g01_c{i:02d}.jpg")
    _imagenet_family(root)
    return root


def classnames_lines() -> list[str]:
    """ImageNet's ``classnames.txt`` for the miniature: the train classes plus every class
    of ImageNet-A and -R (their readers look their 200 classes up in it)."""
    here = Path(__file__).resolve().parents[1] / "vlmeft" / "data" / "coop"
    wnids = set(IMAGENET)
    for name in ("imagenet_a_wnids.txt", "imagenet_r_wnids.txt"):
        wnids |= set((here / name).read_text().split())
    return [f"{w} {IMAGENET.get(w, 'thing ' + w[-4:])}" for w in sorted(wnids)]


def _imagenet_family(root: Path) -> None:
    lines = "\n".join(classnames_lines()) + "\n"
    ds = root / "imagenet"
    ds.mkdir()
    (ds / "classnames.txt").write_text(lines, encoding="utf-8")
    for label, wnid in enumerate(sorted(IMAGENET)):
        for i in range(N_TRAIN):
            _image(ds / "images" / "train" / wnid / f"{wnid}_{i}.JPEG", label)
        for i in range(N_TEST):
            _image(ds / "images" / "val" / wnid / f"ILSVRC2012_val_{label}{i:07d}.JPEG", label)
    # ImageNet-V2: numbered folders, indices into classnames.txt.
    ds = root / "imagenetv2"
    ds.mkdir()
    (ds / "classnames.txt").write_text(lines, encoding="utf-8")
    for index in (0, 1, 2):
        for i in range(2):
            _image(ds / "imagenetv2-matched-frequency-format-val" / str(index) / f"{index}{i}abc.jpeg", index)
    # ImageNet-Sketch: wnid folders (sorted = labels).
    ds = root / "imagenet-sketch"
    ds.mkdir()
    (ds / "classnames.txt").write_text(lines, encoding="utf-8")
    for label, wnid in enumerate(sorted(IMAGENET)):
        for i in range(2):
            _image(ds / "images" / wnid / f"sketch_{i}.png", label, fmt="PNG")
    # ImageNet-A and -R: some of their 200 class folders, and the README the readers skip.
    for folder, sub, present in (("imagenet-adversarial", "imagenet-a", A_PRESENT),
                                 ("imagenet-rendition", "imagenet-r", R_PRESENT)):
        ds = root / folder
        (ds / sub).mkdir(parents=True)
        (ds / "classnames.txt").write_text(lines, encoding="utf-8")
        (ds / sub / "README.txt").write_text("fabricated\n", encoding="utf-8")
        for label, wnid in enumerate(present):
            for i in range(2):
                _image(ds / sub / wnid / f"{i}.jpg", label)


# What correct readers return: cleaned class names (label order), split sizes, template.
_SPLITS = (4 * N_TRAIN, 4 * N_VAL, 4 * N_TEST)
EXPECTED: dict[str, dict] = {
    "caltech101": {"classnames": ["face", "accordion", "airplane", "yin yang"], "sizes": _SPLITS,
                   "template": "a photo of a {}."},
    "oxford_pets": {"classnames": ["abyssinian", "american bulldog", "bengal", "yorkshire terrier"], "sizes": _SPLITS,
                    "template": "a photo of a {}, a type of pet."},
    "stanford_cars": {"classnames": ["2012 Tesla Model S", "2012 BMW M3 coupe", "2007 Hyundai Elantra Sedan",
                                     "1993 Geo Metro Convertible"], "sizes": _SPLITS, "template": "a photo of a {}."},
    "oxford_flowers": {"classnames": ["pink primrose", "hard-leaved pocket orchid", "canterbury bells", "sweet pea"],
                       "sizes": _SPLITS, "template": "a photo of a {}, a type of flower."},
    "food101": {"classnames": ["apple pie", "baby back ribs", "baklava", "beef carpaccio"], "sizes": _SPLITS,
                "template": "a photo of {}, a type of food."},
    "fgvc_aircraft": {"classnames": ["707-320", "A300B4", "Cessna 172", "F/A-18"], "sizes": _SPLITS,
                      "template": "a photo of a {}, a type of aircraft."},
    "sun397": {"classnames": ["abbey", "airport terminal", "shop bakery", "outdoor church"], "sizes": _SPLITS,
               "template": "a photo of a {}."},
    "dtd": {"classnames": ["banded", "blotchy", "braided", "bubbly"], "sizes": _SPLITS, "template": "{} texture."},
    "eurosat": {"classnames": ["Annual Crop Land", "Forest", "Highway or Road", "Sea or Lake"], "sizes": _SPLITS,
                "template": "a centered satellite photo of {}."},
    "ucf101": {"classnames": ["Apply Eye Makeup", "Apply Lipstick", "Archery", "Baby Crawling"], "sizes": _SPLITS,
               "template": "a photo of a person doing {}."},
    "imagenet": {"classnames": [IMAGENET[w] for w in sorted(IMAGENET)], "sizes": (4 * N_TRAIN, 4 * N_TRAIN, 4 * N_TEST),
                 "template": "a photo of a {}."},
}
