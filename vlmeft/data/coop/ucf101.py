"""UCF101 (Soomro, Zamir and Shah, 2012): 101 actions, one middle frame per video.

Folders of ``UCF-101-midframes`` are the actions with ``_`` between words
(``Apply_Eye_Makeup``), and so are the class names.
"""

from vlmeft.data.coop._reader import SplitFileDataset

READER = SplitFileDataset(
    id="ucf101", name="UCF101", folder="ucf101", template="a photo of a person doing {}.", order=10,
    split_file="split_zhou_UCF101.json", image_dir="UCF-101-midframes", classname_of=lambda rel: rel.split("/", 1)[0],
    expects=("UCF-101-midframes/", "split_zhou_UCF101.json"),
    layout="ucf101/\n|-- UCF-101-midframes/\n|-- split_zhou_UCF101.json",
    description="UCF101: actions (middle video frames)",
)
