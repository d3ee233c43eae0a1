"""ImageNet-V2 matched-frequency (Recht et al., 2019): 10,000 new test images of the
1,000 classes; test-only (the papers train on ImageNet).

Folders are numbered ``0..999``: folder ``i`` holds class ``i``, line ``i`` of the
``classnames.txt`` copied from ImageNet.
"""

from vlmeft.data.coop._reader import VariantFolders

READER = VariantFolders(
    id="imagenetv2", name="ImageNetV2", folder="imagenetv2", template="a photo of a {}.", order=11,
    source="imagenet", image_dir="imagenetv2-matched-frequency-format-val", numbered=True,
    expects=("imagenetv2-matched-frequency-format-val/", "classnames.txt"),
    layout="imagenetv2/\n|-- imagenetv2-matched-frequency-format-val/ # folders 0 .. 999\n|-- classnames.txt",
    description="ImageNet-V2 (matched frequency)",
)
