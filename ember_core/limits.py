"""The limits on what Ember reads from outside, in one place: change them here (README, "Security")."""
from __future__ import annotations

# Images (files, arrays, ROS frames): checked before decoding. 25 megapixels is a 5000x5000 frame,
# above any camera a robot carries, and 75 MB decoded; Pillow's own bomb limit is ~179 megapixels.
IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF")
MAX_IMAGE_BYTES = 32 * 1024 * 1024
MAX_IMAGE_PIXELS = 25_000_000
# JSON documents on topics (and HTTP): nesting and size, checked before the parser builds anything.
MAX_JSON_BYTES = 256 * 1024
MAX_JSON_DEPTH = 32
# HTTP request bodies (`ember serve`): one image at the limit above, base64-encoded, plus a JSON
# document's worth of fields; a batch shares this one budget.
MAX_HTTP_BODY_BYTES = (MAX_IMAGE_BYTES + 2) // 3 * 4 + MAX_JSON_BYTES
# Requests in one POST /select/batch.
MAX_HTTP_BATCH = 32
# robots.yaml: size, nesting and anchors/aliases (an alias bomb expands a few bytes into gigabytes).
MAX_YAML_BYTES = 1024 * 1024
MAX_YAML_DEPTH = 32
MAX_YAML_ALIASES = 64
# Values (scalars, lists, mappings) one document may hold with its aliases expanded: what a file of
# MAX_YAML_BYTES could spell out with short values, so aliases save typing but multiply nothing. A
# robots.yaml of 50 robots with overrides holds a few thousand.
MAX_YAML_NODES = MAX_YAML_BYTES // 8
# A plugin hook slower than this (seconds) is reported with its time.
HOOK_TIME_BUDGET_S = 0.25
# Ranked robots one result may list.
MAX_TOP_K = 256
# Characters of a refused task echoed back in its error result.
MAX_TASK_ECHO = 4096
# Parts of one task scored on their own for a team (ember_core.clauses): each is one more prompt in the
# batch, so a task of many "then"s keeps its first parts and scores the rest as one.
MAX_TASK_PARTS = 8
