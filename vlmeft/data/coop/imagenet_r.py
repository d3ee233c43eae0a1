"""ImageNet-R (Hendrycks et al., 2021): renditions (art, cartoons, ...) of a 200-class
subset; test-only.

The 200 classes (``imagenet_r_wnids.txt``, ImageNet order) are ``imagenet_r_wnids`` of
the official evaluation code (hendrycks/imagenet-r ``eval.py``), which are the folders
of ``imagenet-r/``; CoOp labels the sorted folders, the same order.
"""

from vlmeft.data.coop._reader import VariantFolders

READER = VariantFolders(
    id="imagenet_r", name="ImageNetR", folder="imagenet-rendition", template="a photo of a {}.", order=14,
    source="imagenet", image_dir="imagenet-r", wnids_file="imagenet_r_wnids.txt", ignore=("README.txt",),
    expects=("imagenet-r/", "classnames.txt"),
    layout="imagenet-rendition/\n|-- imagenet-r/ # 200 folders like n01443537\n|-- classnames.txt",
    description="ImageNet-R (200 classes)",
)
