"""The scene vocabulary (tags and their prose words), keyword rules for a task's tags, and scene images.

`SCENE_TAGS` is the one list of scene tags: robot cards name them in their scene rules, the training
targets describe them with `SCENE_WORDS`, the baselines and the scene head read them, and
`ember_core.hookspecs.TaskContext.scene` carries them. `COARSE_SCENE_TAGS` is the subset a camera
image can show (where the robot is, not what the ground is like).

The public dataset has no images, so training pairs each task with a picture of the environment its
words name. `scene_tags` reads those words with keyword rules; `render_scene` draws the scene. Both
see only the task text, so the image can carry nothing the text does not already say, and two
records with the same text get identical pixels whatever their labels.
"""
from __future__ import annotations

import hashlib
import random
import re

from PIL import Image, ImageDraw

from ember_core.text import normalise_task

# Each scene tag and the words that describe it in prose ("the work happens under water",
# "Drone cannot operate under water"); its keys, in this order, are SCENE_TAGS.
SCENE_WORDS: dict[str, str] = {
    "underwater": "under water",
    "aerial": "at height or from the air",
    "indoor": "indoors",
    "outdoor": "outdoors",
    "rough_terrain": "on rough or uneven ground",
}
SCENE_TAGS: tuple[str, ...] = tuple(SCENE_WORDS)
# The tags a scene head predicts from an image and hands to TaskContext.scene, in the order of the
# shipped model's scene head; rough terrain is a detail of the ground, not a scene of its own.
COARSE_SCENE_TAGS: tuple[str, ...] = ("aerial", "underwater", "indoor", "outdoor")

# Whole-word (or phrase) keywords per tag of SCENE_TAGS (the same keys, in the same order); an
# optional plural "s"/"es" is allowed after each.
KEYWORDS: dict[str, tuple[str, ...]] = {
    "underwater": (
        "underwater", "under water", "subsea", "sea", "seabed", "seafloor", "sea floor", "deep-sea", "ocean",
        "marine", "submerged", "submarine", "sunken", "reef", "coral", "hull", "pool", "riverbed",
        "river bed", "lakebed", "lake bed", "shipwreck", "wreckage", "dive", "diving", "seaweed", "fish",
    ),
    "aerial": (
        "aerial", "from the air", "in the air", "sky", "roof", "rooftop", "roof-mounted", "high-rise", "skyscraper", "tower",
        "from above", "overhead", "bird's-eye", "tall", "fly", "flying", "uav", "blade", "billboard",
        "top of", "power line", "wind turbine", "altitude",
    ),
    "indoor": (
        "indoor", "indoors", "inside", "interior", "building", "warehouse", "office", "hospital", "room",
        "corridor", "hallway", "aisle", "factory", "home", "house", "kitchen", "mall", "supermarket",
        "stadium", "duct", "stairwell", "staircase", "manufacturing plant", "assembly line", "storage facility",
        "greenhouse", "underground", "tunnel", "shaft", "parking structure",
    ),
    "outdoor": (
        "outdoor", "outdoors", "outside", "field", "forest", "forested", "wooded", "mountain", "mountainous",
        "road", "street", "highway", "railway", "park", "farm", "farmland", "terrain", "rubble", "desert",
        "dune", "hill", "hillside", "canyon", "glacier", "volcanic", "landscape", "pasture", "orchard",
        "vineyard", "garden", "campus", "city", "urban", "town", "trail", "path", "plain", "quarry",
        "construction site", "planet", "martian", "moon", "coastal", "cliff", "reserve", "crop", "livestock",
        "embankment", "riverbank", "perimeter", "exterior", "lake", "flooded", "flood zone", "bunker", "silo",
        "bridge", "dam", "soil", "tree", "irrigation", "wildlife", "solar panel", "agricultural", "industrial complex",
    ),
    "rough_terrain": (
        "rough", "rugged", "uneven", "rubble", "rocky", "rock", "stairs", "stair", "staircase", "stairway",
        "stairwell", "steep", "debris", "mud", "muddy", "collapsed", "incline", "unstable", "dune", "sandy",
        "volcanic", "obstacle",
    ),
}
# Phrases that contain a keyword but deny its scene; they are removed before matching.
NEGATED = ("dry riverbed", "dry river bed")
_PATTERNS = {
    tag: re.compile(r"\b(?:" + "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True)) + r")(?:s|es)?\b")
    for tag, words in KEYWORDS.items()
}
# One picture per task: the first tag of this list found names the scene drawn; rough terrain and
# the other tags only change details (rocks on the ground, water or roofs below an aerial view).
_PRIORITY = ("underwater", "aerial", "indoor", "outdoor")


def scene_tags(task: str) -> frozenset[str]:
    """The scene tags whose keywords occur in the task text (empty when none does)."""
    text = normalise_task(task).lower()
    for phrase in NEGATED:
        text = text.replace(phrase, " ")
    return frozenset(tag for tag, pattern in _PATTERNS.items() if pattern.search(text))


def render_scene(task: str, size: int = 224) -> Image.Image:
    """An RGB picture of the task's scene; its details are seeded by a hash of the normalised text."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 16:
        raise ValueError(f"size must be an integer >= 16 pixels, got {size!r}")
    tags = scene_tags(task)
    digest = hashlib.sha256(normalise_task(task).encode("utf-8")).digest()
    rng = random.Random(int.from_bytes(digest[:8], "big"))
    image = Image.new("RGB", (size, size))
    draw = ImageDraw.Draw(image)
    scene = next((tag for tag in _PRIORITY if tag in tags), None)
    painter = {"underwater": _underwater, "aerial": _aerial, "indoor": _indoor, "outdoor": _outdoor}
    painter.get(scene, _unknown)(draw, size, rng, tags)
    return image


def _underwater(draw: ImageDraw.ImageDraw, s: int, rng: random.Random, tags: frozenset[str]) -> None:
    for y in range(s):
        shade = y / s
        draw.line([(0, y), (s, y)], fill=(10, int(70 - 40 * shade), int(150 - 70 * shade)))
    for _ in range(6):
        # Caustics: light bands the surface throws on the water.
        y, tilt = rng.uniform(0.05, 0.6) * s, rng.uniform(-0.15, 0.15) * s
        draw.line([(0, y), (s, y + tilt)], fill=(60, 130, 200), width=max(1, s // 40))
    sand = int(0.82 * s)
    draw.rectangle([0, sand, s, s], fill=(194, 178, 128))
    if "rough_terrain" in tags:
        _rocks(draw, s, rng, sand, (110, 100, 90))


def _aerial(draw: ImageDraw.ImageDraw, s: int, rng: random.Random, tags: frozenset[str]) -> None:
    draw.rectangle([0, 0, s, s], fill=(150, 200, 240))
    for _ in range(4):
        x, y, w = rng.uniform(0, 0.8) * s, rng.uniform(0.05, 0.45) * s, rng.uniform(0.15, 0.3) * s
        draw.ellipse([x, y, x + w, y + w / 2.5], fill=(250, 250, 252))
    ground = int(0.78 * s)
    below = (40, 90, 170) if "underwater" in tags else (120, 120, 125) if "indoor" in tags else (90, 140, 70)
    draw.rectangle([0, ground, s, s], fill=below)
    if "indoor" in tags:
        for _ in range(5):
            x, h = rng.uniform(0, 0.9) * s, rng.uniform(0.03, 0.1) * s
            draw.rectangle([x, ground - h, x + s / 12, ground], fill=(90, 90, 100))
    if "rough_terrain" in tags:
        _rocks(draw, s, rng, ground, (100, 95, 85), scale=0.4)


def _indoor(draw: ImageDraw.ImageDraw, s: int, rng: random.Random, tags: frozenset[str]) -> None:
    ceiling, floor = int(0.15 * s), int(0.7 * s)
    draw.rectangle([0, 0, s, ceiling], fill=(235, 235, 230))
    draw.rectangle([0, ceiling, s, floor], fill=(215, 205, 180))
    draw.rectangle([0, floor, s, s], fill=(140, 110, 80))
    draw.line([(0, ceiling), (s, ceiling)], fill=(90, 90, 90), width=max(1, s // 80))
    for _ in range(2):
        # A door or window somewhere on the back wall.
        x = rng.uniform(0.05, 0.8) * s
        draw.rectangle([x, floor - 0.35 * s, x + 0.12 * s, floor], fill=(120, 90, 60))
    if "rough_terrain" in tags:
        _rocks(draw, s, rng, floor, (110, 105, 100))


def _outdoor(draw: ImageDraw.ImageDraw, s: int, rng: random.Random, tags: frozenset[str]) -> None:
    horizon = int(0.45 * s)
    draw.rectangle([0, 0, s, horizon], fill=(135, 190, 235))
    draw.rectangle([0, horizon, s, s], fill=(95, 140, 60))
    for _ in range(3):
        x, y = rng.uniform(0, 1) * s, rng.uniform(horizon, s)
        draw.ellipse([x, y, x + 0.3 * s, y + 0.06 * s], fill=(130, 105, 70))
    if "rough_terrain" in tags:
        _rocks(draw, s, rng, horizon, (115, 110, 100))


def _unknown(draw: ImageDraw.ImageDraw, s: int, rng: random.Random, tags: frozenset[str]) -> None:
    floor = int(0.65 * s)
    draw.rectangle([0, 0, s, floor], fill=(160, 160, 160))
    draw.rectangle([0, floor, s, s], fill=(110, 110, 110))
    draw.line([(0, floor), (s, floor)], fill=(80, 80, 80), width=max(1, s // 80))
    if "rough_terrain" in tags:
        _rocks(draw, s, rng, floor, (90, 90, 90))


def _rocks(draw: ImageDraw.ImageDraw, s: int, rng: random.Random, top: int, colour: tuple, scale: float = 1.0) -> None:
    for _ in range(10):
        w = rng.uniform(0.04, 0.12) * s * scale
        x, y = rng.uniform(0, 1) * s, rng.uniform(top, s - w / 2)
        draw.ellipse([x, y, x + w, y + w * 0.6], fill=colour, outline=(60, 55, 50))
