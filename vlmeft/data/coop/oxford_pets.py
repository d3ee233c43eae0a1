"""Oxford-IIIT Pets (Parkhi et al., 2012): 37 cat and dog breeds.

The class name is the image name without its number, lower-cased
(``Abyssinian_100.jpg`` -> ``abyssinian``), as CoOp's reader builds it from the
annotation lists.
"""

from vlmeft.data.coop._reader import SplitFileDataset


def _classname(rel: str) -> str:
    stem = rel.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    return "_".join(stem.split("_")[:-1]).lower()


READER = SplitFileDataset(
    id="oxford_pets", name="OxfordPets", folder="oxford_pets", template="a photo of a {}, a type of pet.", order=2,
    split_file="split_zhou_OxfordPets.json", image_dir="images", classname_of=_classname,
    expects=("images/", "annotations/", "split_zhou_OxfordPets.json"),
    layout="oxford_pets/\n|-- images/\n|-- annotations/\n|-- split_zhou_OxfordPets.json",
    description="Oxford-IIIT Pets: cat and dog breeds",
)
