"""ImageNet-Sketch (Wang et al., 2019): sketches of the 1,000 classes; test-only.

Labels follow the sorted wnid folders under ``images/``; names come from the
``classnames.txt`` copied from ImageNet.
"""

from vlmeft.data.coop._reader import VariantFolders

READER = VariantFolders(
    id="imagenet_sketch", name="ImageNetSketch", folder="imagenet-sketch", template="a photo of a {}.", order=12,
    source="imagenet", image_dir="images", expects=("images/", "classnames.txt"),
    layout="imagenet-sketch/\n|-- images/ # 1,000 folders like n01440764\n|-- classnames.txt",
    description="ImageNet-Sketch",
)
