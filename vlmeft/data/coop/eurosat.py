"""EuroSAT (Helber et al., 2019): 10 land-use classes of Sentinel-2 RGB tiles.

CoOp renames every folder to words (``AnnualCrop`` -> ``Annual Crop Land``,
``SeaLake`` -> ``Sea or Lake``, ...); the split file carries the new names.
"""

from vlmeft.data.coop._reader import SplitFileDataset

RENAMED = {
    "AnnualCrop": "Annual Crop Land",
    "Forest": "Forest",
    "HerbaceousVegetation": "Herbaceous Vegetation Land",
    "Highway": "Highway or Road",
    "Industrial": "Industrial Buildings",
    "Pasture": "Pasture Land",
    "PermanentCrop": "Permanent Crop Land",
    "Residential": "Residential Buildings",
    "River": "River",
    "SeaLake": "Sea or Lake",
}


def _classname(rel: str) -> str:
    folder = rel.split("/", 1)[0]
    return RENAMED.get(folder, f"<a folder EuroSAT does not have: {folder}>")


READER = SplitFileDataset(
    id="eurosat", name="EuroSAT", folder="eurosat", template="a centered satellite photo of {}.", order=9,
    split_file="split_zhou_EuroSAT.json", image_dir="2750", classname_of=_classname,
    expects=("2750/", "split_zhou_EuroSAT.json"),
    layout="eurosat/\n|-- 2750/\n|-- split_zhou_EuroSAT.json",
    description="EuroSAT: satellite land use",
)
