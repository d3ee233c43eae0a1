"""ImageNet (ILSVRC-2012, Deng et al., 2009): 1,000 classes; the source of CoOp's
cross-dataset and domain-generalisation protocols.

Class names come from the user's ``classnames.txt`` (CoOp's copy of CLIP's cleaned
names, ``wnid name`` per line); labels follow the sorted ``images/train`` folders. The
official val set is the test set. Few-shot val shots are drawn from the train images
left after the train draw (CoOp has no val split for ImageNet; see ``_reader``).
"""

from vlmeft.data.coop._reader import ImageNetFolders

READER = ImageNetFolders(
    id="imagenet", name="ImageNet", folder="imagenet", template="a photo of a {}.", order=0,
    expects=("classnames.txt", "images/train/", "images/val/"),
    layout="imagenet/\n|-- classnames.txt\n|-- images/\n|   |-- train/ # 1,000 folders like n01440764\n"
           "|   |-- val/",
    description="ImageNet",
)
