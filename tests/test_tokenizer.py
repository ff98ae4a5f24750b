"""Tests for the packaged tokenizer, Ember's special tokens, the embedding-size validation, and the
TextTokenizer giving transformers' ids for the packaged, the shipped model's and the sentence encoder's files."""
from __future__ import annotations

import logging
import socket

import huggingface_hub.constants
import pytest
import torch
from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

from ember_core.model.task_tokenizer import MAX_TOKENS, load_task_tokenizer, minilm_source
from ember_core.model.text_tokenizer import TextTokenizer
from ember_core.model.tokenizer import (
    ACTION_PLAN,
    DEFAULT_TOKENIZER_DIR,
    IMAGE,
    REASONING_END,
    REASONING_START,
    SELECTION,
    SPECIAL_TOKENS,
    load_tokenizer,
    special_token_ids,
    validate_embeddings,
)

BASE_SIZE = 50257  # GPT-2's vocabulary size, which the packaged tokenizer matches
FULL_SIZE = BASE_SIZE + len(SPECIAL_TOKENS)

ROUND_TRIP_TEXTS = [
    "Inspect the intake pipe of a flooded pump station for blockages.",
    "Task: Deliver 3 boxes (12.5 kg each) to Room 4B -- then report back!",
    "Step 1: Task analysis\nStep 2: Environment assessment\n\nStep 4: Decision",
    "The café's naïve façade; 50% off? Über-fast, 20°C, 日本語, emoji 🤖.",
    "  leading spaces, trailing tab\t and UPPER CASE and MiXeD",
]


def _set_offline(patch: pytest.MonkeyPatch) -> None:
    # huggingface_hub reads HF_HUB_OFFLINE once at import, so the constant is patched too.
    patch.setenv("HF_HUB_OFFLINE", "1")
    patch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    _set_offline(monkeypatch)


@pytest.fixture(scope="module")
def tokenizer():
    """The default tokenizer, loaded once; tests must not change it."""
    with pytest.MonkeyPatch.context() as patch:
        _set_offline(patch)
        return load_tokenizer()


def tiny_lm(vocab_size: int, model_class: type[GPT2LMHeadModel] = GPT2LMHeadModel) -> GPT2LMHeadModel:
    torch.manual_seed(0)
    config = GPT2Config(n_embd=32, n_layer=1, n_head=2, n_positions=64, vocab_size=vocab_size)
    return model_class(config).eval()


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == "ember.model"]


def test_default_tokenizer_has_gpt2_size_plus_special_tokens(tokenizer) -> None:
    assert len(tokenizer) == FULL_SIZE
    assert tokenizer.eos_token == tokenizer.pad_token == "<|endoftext|>"
    assert tokenizer.eos_token_id == BASE_SIZE - 1


def test_the_token_names_are_the_five_special_tokens_in_vocabulary_order() -> None:
    assert (REASONING_START, REASONING_END, SELECTION, ACTION_PLAN, IMAGE) == SPECIAL_TOKENS == (
        "<|reasoning_start|>", "<|reasoning_end|>", "<|robot_selection|>", "<|action_plan|>", "<|image|>")


def test_special_tokens_are_single_new_ids_that_round_trip(tokenizer) -> None:
    ids = special_token_ids(tokenizer)
    assert list(ids) == list(SPECIAL_TOKENS)
    assert list(ids.values()) == list(range(BASE_SIZE, FULL_SIZE))
    for token, token_id in ids.items():
        assert tokenizer.encode(token, add_special_tokens=False) == [token_id]
        assert tokenizer.decode([token_id]) == token


@pytest.mark.parametrize("text", ROUND_TRIP_TEXTS)
def test_plain_text_round_trips_exactly(tokenizer, text: str) -> None:
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert tokenizer.decode(ids) == text
    assert max(ids) < BASE_SIZE


def test_common_words_are_single_tokens(tokenizer) -> None:
    sentence = "Inspect the intake pipe of a flooded pump station for blockages."
    assert len(tokenizer.encode(sentence, add_special_tokens=False)) == 12  # 11 words and the period


def test_special_tokens_inside_text_are_not_split(tokenizer) -> None:
    text = f"{IMAGE}Task: survey a roof{REASONING_START}Step 1: Task analysis{REASONING_END}{SELECTION}Drone"
    ids = tokenizer.encode(text, add_special_tokens=False)
    special = special_token_ids(tokenizer)
    for token in (IMAGE, REASONING_START, REASONING_END, SELECTION):
        assert ids.count(special[token]) == 1
    assert ids[0] == special[IMAGE]
    assert tokenizer.decode(ids) == text
    assert "<|" not in tokenizer.decode(ids, skip_special_tokens=True)


def test_loading_a_saved_copy_gives_the_same_ids_and_adds_nothing(tokenizer, tmp_path) -> None:
    tokenizer.save_pretrained(tmp_path)
    reloaded = load_tokenizer(tmp_path)
    assert len(reloaded) == FULL_SIZE
    assert special_token_ids(reloaded) == special_token_ids(tokenizer)
    text = ROUND_TRIP_TEXTS[2] + ACTION_PLAN + ROUND_TRIP_TEXTS[3]
    assert reloaded.encode(text) == tokenizer.encode(text)


def test_special_token_ids_names_a_missing_token() -> None:
    plain = TextTokenizer.from_directory(DEFAULT_TOKENIZER_DIR)
    with pytest.raises(ValueError, match=r"<\|reasoning_start\|>.*load_tokenizer"):
        special_token_ids(plain)


def test_matching_embedding_is_confirmed(tokenizer, caplog) -> None:
    caplog.set_level(logging.INFO, logger="ember.model")
    model = tiny_lm(FULL_SIZE)
    validate_embeddings(model, tokenizer)
    assert messages(caplog) == [f"✓ Embedding size matches tokenizer: {FULL_SIZE} tokens"]


def test_smaller_embedding_is_resized_and_the_special_ids_then_work(tokenizer, caplog) -> None:
    caplog.set_level(logging.INFO, logger="ember.model")
    model = tiny_lm(BASE_SIZE)
    validate_embeddings(model, tokenizer)
    logged = messages(caplog)
    assert logged[:3] == [
        "⚠️ CRITICAL: Embedding size mismatch detected!",
        f"   Current embedding size: {BASE_SIZE}",
        f"   Required (tokenizer size): {FULL_SIZE}",
    ]
    assert logged[3].startswith("   Special tokens in use: ") and "'<|image|>=50261'" in logged[3]
    assert logged[4:] == [
        "🔧 Resizing embeddings to match tokenizer...",
        "✓ Resized embeddings via resize_token_embeddings()",
        f"✅ Embedding resize successful: {FULL_SIZE} tokens",
    ]
    assert model.get_input_embeddings().weight.shape[0] == FULL_SIZE
    assert model.get_output_embeddings().weight.shape[0] == FULL_SIZE
    ids = torch.tensor([tokenizer.encode(f"{IMAGE}Deliver a parcel{REASONING_START}")])
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    assert logits.shape == (1, ids.shape[1], FULL_SIZE)


def test_larger_embedding_is_left_alone_with_a_warning(tokenizer, caplog) -> None:
    padded = 50304  # the next multiple of 64, as hub models pad their embeddings
    model = tiny_lm(padded)
    validate_embeddings(model, tokenizer)
    assert model.get_input_embeddings().weight.shape[0] == padded
    (record,) = [r for r in caplog.records if r.name == "ember.model"]
    assert record.levelno == logging.WARNING
    assert str(padded) in record.getMessage() and f"ids >= {FULL_SIZE} are unused" in record.getMessage()


class ResizeIgnoringLM(GPT2LMHeadModel):
    """Simulates a wrapper whose resize_token_embeddings does not reach the embedding it wraps."""

    def resize_token_embeddings(self, *args, **kwargs) -> torch.nn.Embedding:
        return self.get_input_embeddings()


def test_resize_that_does_not_take_effect_raises(tokenizer, caplog) -> None:
    model = tiny_lm(BASE_SIZE, ResizeIgnoringLM)
    with pytest.raises(RuntimeError, match=rf"from {BASE_SIZE} to {FULL_SIZE}.*input embedding has {BASE_SIZE}"):
        validate_embeddings(model, tokenizer)


def test_unknown_name_raises_a_clear_error_without_network(monkeypatch) -> None:
    lookups = []

    def no_dns(host, *args, **kwargs):
        # Recorded, not only raised: the hub client catches connection errors and retries.
        lookups.append(host)
        raise OSError(f"the test forbids network access (looked up {host})")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    with pytest.raises(OSError, match=r"(?s)'no-such-org/no-such-tokenizer'.*Pass a directory"):
        load_tokenizer("no-such-org/no-such-tokenizer")
    assert lookups == []


# Tasks as users write them, and text that stresses a tokenizer: normalisation-sensitive characters,
# combining marks, scripts without spaces, emoji sequences, control and zero-width characters, marker
# strings of both tokenizers, and a task longer than the sentence encoder's MAX_TOKENS.
PARITY_TEXTS = [
    *ROUND_TRIP_TEXTS,
    "Inspect the hull of a ship under water for cracks",
    "ﬁnd the ﬂooded ﬂoor; Ⅻ bays, ½ full, x² + y², ＦＵＬＬＷＩＤＴＨ ｔｅｘｔ",
    "Cafe\u0301 vs Café, İstanbul, STRASSE vs straße, ǅemal",
    "検査してください 屋根の点検 / 检查屋顶 / فحص السقف / छत का निरीक्षण / Ελέγξτε τη στέγη",
    "👩\u200d🔧 repair the pump 🇩🇪 ❤️ \u200b\u200c\u200d\ufeff zero-width",
    "\u202eevil RTL\u202c text\x00\x07\x1b[31m with controls\r\n\t",
    f"{SELECTION} pick me {IMAGE}{IMAGE} [SEP] [CLS] [PAD] [MASK] [UNK] <|endoftext|> marker strings",
    "   ",
    " ".join(["Survey the collapsed parking garage for cracks and trapped people"] * 30),
]


def _transformers_tokenizer(directory):
    """The tokenizer as Ember loaded it with transformers before TextTokenizer: the files, Ember's special
    tokens added where missing, eos as pad."""
    reference = AutoTokenizer.from_pretrained(directory)
    missing = [token for token in SPECIAL_TOKENS if token not in reference.all_special_tokens]
    if missing:
        reference.add_special_tokens({"extra_special_tokens": missing}, replace_extra_special_tokens=False)
    if reference.pad_token is None:
        reference.pad_token = reference.eos_token
    return reference


def _assert_same_ids(ours, reference, texts: list[str], max_length: int | None = None) -> None:
    for text in texts:
        for split in (False, True):
            for add in (False, True):
                expected = reference(text, split_special_tokens=split, add_special_tokens=add)["input_ids"]
                assert ours(text, add_special_tokens=add, split_special_tokens=split)["input_ids"] == expected, text
        ids = reference(text)["input_ids"]
        assert ours.decode(ids) == reference.decode(ids)
        assert ours.decode(ids, skip_special_tokens=True) == reference.decode(ids, skip_special_tokens=True)
        assert ours.convert_ids_to_tokens(ids) == reference.convert_ids_to_tokens(ids)
    expected = reference(texts, padding=True, truncation=max_length is not None, max_length=max_length,
                         return_tensors="np", split_special_tokens=True)
    batch = ours.batch(texts, split_special_tokens=True, max_length=max_length)
    assert batch["input_ids"].tolist() == expected["input_ids"].tolist()
    assert batch["attention_mask"].tolist() == expected["attention_mask"].tolist()
    assert len(ours) == len(reference)
    assert (ours.eos_token_id, ours.pad_token_id, ours.bos_token_id) == (reference.eos_token_id, reference.pad_token_id,
                                                                         reference.bos_token_id)
    assert ours.convert_tokens_to_ids(["no-such-token", *SPECIAL_TOKENS]) == reference.convert_tokens_to_ids(
        ["no-such-token", *SPECIAL_TOKENS])


@pytest.mark.parametrize("directory", [DEFAULT_TOKENIZER_DIR, DEFAULT_TOKENIZER_DIR.parent / "default_model"],
                         ids=["packaged", "shipped-model"])
def test_the_text_tokenizer_gives_the_ids_transformers_gives(directory) -> None:
    _assert_same_ids(load_tokenizer(directory), _transformers_tokenizer(directory), PARITY_TEXTS)


def test_the_sentence_encoders_tokenizer_gives_transformers_ids_padded_and_cut() -> None:
    ours = load_task_tokenizer("minilm")
    assert max(len(ours(text)["input_ids"]) for text in PARITY_TEXTS) > MAX_TOKENS  # the batch is cut
    _assert_same_ids(ours, AutoTokenizer.from_pretrained(minilm_source()), PARITY_TEXTS, MAX_TOKENS)


def test_transformers_reads_what_the_text_tokenizer_saves(tokenizer, tmp_path) -> None:
    tokenizer.save_pretrained(tmp_path / "lm")
    load_task_tokenizer("minilm").save_pretrained(tmp_path / "task")
    _assert_same_ids(tokenizer, AutoTokenizer.from_pretrained(tmp_path / "lm"), PARITY_TEXTS)
    _assert_same_ids(TextTokenizer.from_directory(tmp_path / "task"), AutoTokenizer.from_pretrained(tmp_path / "task"),
                     PARITY_TEXTS, MAX_TOKENS)
