"""ImageNet-A (Hendrycks et al., 2021): natural adversarial images of a 200-class
subset; test-only.

The 200 classes (``imagenet_a_wnids.txt``, ImageNet order) are those of the official
evaluation code (hendrycks/natural-adv-examples ``eval.py``, ``thousand_k_to_200``),
which are the folders of ``imagenet-a/``; CoOp labels the sorted folders, the same order.
"""

from vlmeft.data.coop._reader import VariantFolders

READER = VariantFolders(
    id="imagenet_a", name="ImageNetA", folder="imagenet-adversarial", template="a photo of a {}.", order=13,
    source="imagenet", image_dir="imagenet-a", wnids_file="imagenet_a_wnids.txt", ignore=("README.txt",),
    expects=("imagenet-a/", "classnames.txt"),
    layout="imagenet-adversarial/\n|-- imagenet-a/ # 200 folders like n01498041\n|-- classnames.txt",
    description="ImageNet-A (200 classes)",
)
