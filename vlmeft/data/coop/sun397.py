"""SUN397 (Xiao et al., 2010): 397 scene categories.

CoOp names a class by its folder path without the first letter, words reversed so that
qualifiers come first: ``b/bakery/shop`` -> ``shop bakery``, ``a/abbey`` -> ``abbey``.
"""

from vlmeft.data.coop._reader import SplitFileDataset


def _classname(rel: str) -> str:
    return " ".join(rel.split("/")[1:-1][::-1])


READER = SplitFileDataset(
    id="sun397", name="SUN397", folder="sun397", template="a photo of a {}.", order=7,
    split_file="split_zhou_SUN397.json", image_dir="SUN397", classname_of=_classname,
    expects=("SUN397/", "split_zhou_SUN397.json"),
    layout="sun397/\n|-- SUN397/\n|-- split_zhou_SUN397.json\n|-- ... # a bunch of .txt files",
    description="SUN397: scenes",
)
