"""Card embeddings kept between runs: what an export's graphs make of a fleet's card phrases, in the user's cache.

Embedding every card phrase (283 for the default fleet) is most of an export's load time on a CPU (about 2 s
of 3 on 2 cores), and the result depends only on the graphs and the phrases' ids; the card classifier fitted
on the embeddings (`ember_core.card_classifier`, about 70 ms) is kept with them. A cache file is named by
the sha256 of both (the graphs by the sha256s their manifest lists and the backend checked), so another
export, fleet or card wording is another file; a file that does not read back as finite arrays is computed
again and replaced. Both backends keep the new-robot encoder's embeddings of the labelled job steps here too
(`ember_core.new_robot_steps.labelled_step_embeddings`), keyed by that encoder alone. EMBER_CACHE_DIR moves the
cache (default: $XDG_CACHE_HOME/ember, else ~/.cache/ember; set but empty: no cache); where it cannot be written
the embeddings are computed each time.
"""
from __future__ import annotations

import hashlib
import io
import logging
import os
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from ember_core.atomic import write_bytes_atomic

log = logging.getLogger("ember.model")
CACHE_ENV = "EMBER_CACHE_DIR"
CARD_EMBEDDINGS_DIR = "card_embeddings"
FORMAT = "ember.card_embeddings/2"  # part of every key: a change of what is stored starts a new cache (2: with the card classifier)

Arrays = dict[str, np.ndarray]


def cache_dir() -> Path | None:
    """Where Ember keeps what it computed (EMBER_CACHE_DIR, $XDG_CACHE_HOME/ember, ~/.cache/ember), None for none."""
    configured = os.environ.get(CACHE_ENV)
    if configured is not None:
        return Path(configured) if configured else None
    base = os.environ.get("XDG_CACHE_HOME")
    if not base:
        try:
            base = str(Path.home() / ".cache")
        except RuntimeError:  # no home directory to find (a service account without one)
            return None
    return Path(base) / "ember"


def card_embeddings(graphs: Mapping[str, str], inputs: Mapping[str, np.ndarray], compute: Callable[[], Arrays]) -> Arrays:
    """`compute()`'s arrays for card `inputs` run through the graphs whose sha256s are `graphs`, from the
    cache when it holds them (and into it when it does not)."""
    directory = cache_dir()
    if directory is None:
        return compute()
    path = directory / CARD_EMBEDDINGS_DIR / f"{_key(graphs, inputs)}.npz"
    stored = _read(path)
    if stored is not None:
        return stored
    arrays = compute()
    _write(path, arrays)
    return arrays


def _key(graphs: Mapping[str, str], inputs: Mapping[str, np.ndarray]) -> str:
    digest = hashlib.sha256(FORMAT.encode())
    for graph, sha in sorted(graphs.items()):
        digest.update(f"\0{graph}\0{sha}".encode())
    for name, array in sorted(inputs.items()):
        array = np.ascontiguousarray(array)
        digest.update(f"\0{name}\0{array.dtype.str}\0{array.shape}\0".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _read(path: Path) -> Arrays | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = {name: stored[name] for name in stored.files}
    except Exception as err:  # noqa: BLE001 - a damaged file raises OSError, ValueError, BadZipFile, EOFError...
        log.warning("%s: unreadable cached card embeddings (%s); computing them again", path, err)
        return None
    if not arrays or not all(np.isfinite(array).all() for array in arrays.values()):
        log.warning("%s: cached card embeddings hold no or non-finite values; computing them again", path)
        return None
    return arrays


def _write(path: Path, arrays: Arrays) -> None:
    """Store `arrays` atomically (a reader never sees half a file); where that fails, say how to keep them."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    try:
        write_bytes_atomic(path, buffer.getvalue())
    except OSError as err:
        log.info("card embeddings not cached (%s: %s); set %s to a writable directory to keep them between runs",
                 path.parent, err.strerror or err, CACHE_ENV)
