"""Where synthclip-tiny's files live, and the constants its preprocessing uses."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

CONFIG_NAME = "synthclip-tiny"
HERE = Path(__file__).resolve().parent

# open_clip's default (OpenAI) normalisation. open_clip ignores a `preprocess_cfg` in a
# config registered with add_model_config, so using its defaults keeps plain open_clip
# transforms identical to ours without any override.
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)


def config_dir() -> Path:
    """The folder holding synthclip-tiny.json, for ``open_clip.add_model_config``."""
    return HERE


@lru_cache(maxsize=4)
def config_text(folder: Path, name: str) -> str:
    """The text of ``folder/name.json`` (an open_clip model config), read once."""
    return (folder / f"{name}.json").read_text()


def model_config() -> dict:
    """A fresh copy of the open_clip model config."""
    return json.loads(config_text(HERE, CONFIG_NAME))
