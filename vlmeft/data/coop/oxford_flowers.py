"""Oxford Flowers 102 (Nilsback and Zisserman, 2008): 102 flower species.

Images sit in one flat ``jpg/`` folder; class names come from ``cat_to_name.json``
through the split file.
"""

from vlmeft.data.coop._reader import SplitFileDataset

READER = SplitFileDataset(
    id="oxford_flowers", name="OxfordFlowers", folder="oxford_flowers", template="a photo of a {}, a type of flower.",
    order=4, split_file="split_zhou_OxfordFlowers.json", image_dir="jpg",
    expects=("jpg/", "split_zhou_OxfordFlowers.json"),
    layout="oxford_flowers/\n|-- cat_to_name.json\n|-- imagelabels.mat\n|-- jpg/\n|-- split_zhou_OxfordFlowers.json",
    description="Oxford Flowers 102: flower species",
)
