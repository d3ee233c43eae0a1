"""Describable Textures (Cimpoi et al., 2014): 47 texture words; class name = folder name."""

from vlmeft.data.coop._reader import SplitFileDataset

READER = SplitFileDataset(
    id="dtd", name="DescribableTextures", folder="dtd", template="{} texture.", order=8,
    split_file="split_zhou_DescribableTextures.json", image_dir="images", classname_of=lambda rel: rel.split("/", 1)[0],
    expects=("images/", "split_zhou_DescribableTextures.json"),
    layout="dtd/\n|-- images/\n|-- imdb/\n|-- labels/\n|-- split_zhou_DescribableTextures.json",
    description="DTD: textures",
)
