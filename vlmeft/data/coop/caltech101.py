"""Caltech101 (Fei-Fei, Fergus and Perona, 2004): 100 object categories.

CoOp's reader drops ``BACKGROUND_Google`` and ``Faces_easy`` and renames four folders
(``airplanes`` -> ``airplane``, ``Faces`` -> ``face``, ``Leopards`` -> ``leopard``,
``Motorbikes`` -> ``motorbike``); the split file carries those names.
"""

from vlmeft.data.coop._reader import SplitFileDataset

RENAMED = {"airplanes": "airplane", "Faces": "face", "Leopards": "leopard", "Motorbikes": "motorbike"}


def _classname(rel: str) -> str:
    folder = rel.split("/", 1)[0]
    return RENAMED.get(folder, folder)


READER = SplitFileDataset(
    id="caltech101", name="Caltech101", folder="caltech-101", template="a photo of a {}.", order=1,
    split_file="split_zhou_Caltech101.json", image_dir="101_ObjectCategories", classname_of=_classname,
    expects=("101_ObjectCategories/", "split_zhou_Caltech101.json"),
    layout="caltech-101/\n|-- 101_ObjectCategories/\n|-- split_zhou_Caltech101.json",
    description="Caltech101: objects",
)
