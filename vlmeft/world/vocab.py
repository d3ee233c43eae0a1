"""The world's closed vocabulary: every word a caption, class name or prompt template may use.

Task class names and templates are drawn from these lists, so the pretrained model has seen
every token it is asked about. Bump ``GENERATOR_VERSION`` whenever rendering or captions
change: it is part of every split key, so stale cached features are never reused.
"""

from __future__ import annotations

GENERATOR_VERSION = "world-v3"  # v3: scenes with one object circled in red
IMAGE_SIZE = 32

SHAPES = ("circle", "square", "triangle", "star", "cross", "diamond", "hexagon", "ring")

# Saturated object colours (RGB). Backgrounds use muted tones so objects stand out.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 40),
    "blue": (30, 60, 220),
    "yellow": (240, 220, 30),
    "orange": (250, 140, 20),
    "purple": (140, 40, 180),
    "pink": (250, 130, 190),
    "cyan": (40, 210, 220),
    "brown": (130, 80, 30),
    "white": (245, 245, 245),
}

# Size words and object radii in pixels at IMAGE_SIZE.
SIZES: dict[str, tuple[float, float]] = {
    "small": (3.0, 5.0),
    "medium": (6.0, 8.5),
    "large": (9.5, 13.0),
}

# Regions a single object can be said to be in: (phrase, test on the centre (x, y) in [0, 1]).
POSITIONS = ("on the left", "on the right", "at the top", "at the bottom", "in the center")

# Background textures seen in pretraining. "checkered" is rendered by the world but held
# out of pretraining: it is the unseen texture of the domain-shifted test sets.
BACKGROUNDS = ("plain", "noisy", "striped", "gradient")
HELD_OUT_BACKGROUNDS = ("checkered",)

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

# Caption openings; the task templates use the same ones.
PREFIXES = ("a", "a photo of a", "a picture of a", "an image of a", "a drawing of a")
GENERIC_NOUNS = ("shape", "object")
RELATIONS = ("left of", "right of", "above", "below", "and")

# Function words that glue captions together.
FUNCTION_WORDS = ("a", "an", "the", "of", "on", "at", "in", "photo", "picture", "image", "drawing", "digit",
                  "number", "handwritten", "background", "left", "right", "top", "bottom", "center", "above",
                  "below", "and")


def caption_words() -> frozenset[str]:
    """Every word a caption may contain (punctuation aside)."""
    words: set[str] = set(FUNCTION_WORDS) | set(SHAPES) | set(COLORS) | set(SIZES) | set(BACKGROUNDS)
    words |= set(DIGIT_WORDS) | {str(d) for d in range(10)} | set(GENERIC_NOUNS)
    return frozenset(words)
