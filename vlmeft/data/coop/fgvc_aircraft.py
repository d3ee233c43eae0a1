"""FGVC-Aircraft (Maji et al., 2013): 100 aircraft variants.

No split file: the dataset's own lists. ``variants.txt`` gives the classes in label
order; ``images_variant_{train,val,test}.txt`` give ``<image id> <variant>`` per line
(the variant may hold spaces), the image being ``images/<image id>.jpg``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vlmeft.data.coop._reader import CoopDataset, ImageIndex, Items, Parts, read_text
from vlmeft.errors import VlmeftError


@dataclass(frozen=True)
class AircraftLists(CoopDataset):
    def read(self, directory: Path) -> Parts:
        variants_file = directory / "variants.txt"
        classnames = [line.strip() for line in read_text(variants_file) if line.strip()]
        if not classnames:
            raise VlmeftError("no variants", where=str(variants_file))
        label = {c: i for i, c in enumerate(classnames)}
        index = ImageIndex()
        parts: dict[str, Items] = {}
        for part in ("train", "val", "test"):
            path = directory / f"images_variant_{part}.txt"
            items: Items = []
            for n, line in enumerate(read_text(path), start=1):
                if not line.strip():
                    continue
                image_id, _, variant = line.strip().partition(" ")
                if variant not in label:
                    raise VlmeftError(f"variant '{variant}' is not in {variants_file.name}", where=f"{path}:{n}")
                rel = f"images/{image_id}.jpg"
                if not index.exists(directory / rel):
                    raise VlmeftError(f"image {directory / rel} does not exist", where=f"{path}:{n}")
                items.append((rel, label[variant]))
            if not items:
                raise VlmeftError("no images listed", where=str(path))
            parts[part] = items
        return Parts(classnames, parts["train"], parts["val"], parts["test"])


READER = AircraftLists(
    id="fgvc_aircraft", name="FGVCAircraft", folder="fgvc_aircraft", template="a photo of a {}, a type of aircraft.",
    order=6, expects=("images/", "variants.txt", "images_variant_train.txt"),
    layout="fgvc_aircraft/\n|-- images/\n|-- variants.txt\n|-- images_variant_train.txt\n"
           "|-- images_variant_val.txt\n|-- images_variant_test.txt\n|-- ... # the other .txt files of data/",
    description="FGVC-Aircraft: aircraft variants",
)
