"""Stanford Cars (Krause et al., 2013): 196 car models.

The split file's paths are relative to the dataset folder itself (``cars_train/...``,
``cars_test/...``); class names come from the devkit's ``cars_meta.mat`` with the year
moved to the front (``2012 Tesla Model S``), so the folders do not tell them.
"""

from vlmeft.data.coop._reader import SplitFileDataset

READER = SplitFileDataset(
    id="stanford_cars", name="StanfordCars", folder="stanford_cars", template="a photo of a {}.", order=3,
    split_file="split_zhou_StanfordCars.json", image_dir="",
    expects=("cars_train/", "cars_test/", "split_zhou_StanfordCars.json"),
    layout="stanford_cars/\n|-- cars_test/\n|-- cars_test_annos_withlabels.mat\n|-- cars_train/\n|-- devkit/\n"
           "|-- split_zhou_StanfordCars.json",
    description="Stanford Cars: car models",
)
