"""Food-101 (Bossard, Guillaumin and Van Gool, 2014): 101 dishes; class name = folder name."""

from vlmeft.data.coop._reader import SplitFileDataset

READER = SplitFileDataset(
    id="food101", name="Food101", folder="food-101", template="a photo of {}, a type of food.", order=5,
    split_file="split_zhou_Food101.json", image_dir="images", classname_of=lambda rel: rel.split("/", 1)[0],
    expects=("images/", "split_zhou_Food101.json"),
    layout="food-101/\n|-- images/\n|-- license_agreement.txt\n|-- meta/\n|-- README.txt\n|-- split_zhou_Food101.json",
    description="Food-101: dishes",
)
