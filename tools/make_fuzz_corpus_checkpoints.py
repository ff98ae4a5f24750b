"""Write the corpus of known-bad model-directory files into tests/data/fuzz/checkpoints/, one folder per case.

A case is one file that replaces its namesake in a saved `tiny` model directory (model.safetensors,
config.json, processor_config.json, fleet.json or tokenizer_config.json) and expect.json: {"file": its name, "error": the
exact error load_pretrained raises ("{dir}" stands for the model directory)}. The files are small:
the weights cases are a few tensors, the JSON cases a tiny model's files with one field changed.
tests/test_fuzz_checkpoints.py loads every case and checks that this script still writes the corpus
as committed.

    python tools/make_fuzz_corpus_checkpoints.py [OUT_DIR]     # default: tests/data/fuzz/checkpoints
"""
from __future__ import annotations

import dataclasses
import json
import shutil
import struct
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save

from ember_core import load_fleet
from ember_core.model.config import preset
from ember_core.model.loading import OPTIONAL_PREFIXES

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "fuzz" / "checkpoints"
WEIGHTS, CONFIG, PROCESSOR, FLEET = "model.safetensors", "config.json", "processor_config.json", "fleet.json"
BAD_CONFIG = "{dir}/config.json: not a valid EmberVLM config: %s; fix it or re-save the model"
BAD_PROCESSOR = "{dir}/processor_config.json: not a valid Ember processor config (%s); fix it or re-save the model with save_pretrained"
BAD_FLEET = "{dir}/fleet.json: not a valid fleet record (%s); re-save the model with save_pretrained"
RESAVE = "; re-save or re-copy the model"


def tiny_files() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], list[str]]:
    """config.json, processor_config.json and tokenizer_config.json of the tiny model built for the default
    fleet (as save_pretrained writes them), and the names of the tensors its model.safetensors holds."""
    from ember_core.model.loading import stored_names
    from ember_core.pretrained import build_model

    model, processor = build_model(preset("tiny"), load_fleet())
    with tempfile.TemporaryDirectory() as directory:
        processor.tokenizer.save_pretrained(directory)
        tokenizer_config = json.loads((Path(directory) / "tokenizer_config.json").read_text(encoding="utf-8"))
    for key in ("is_local", "local_files_only"):  # how it was loaded ($HF_HUB_OFFLINE): not needed to load it again
        tokenizer_config.pop(key, None)
    return model.config.to_dict(), dataclasses.asdict(processor.config), tokenizer_config, stored_names(model)


def _lacks(stored: list[str], present: set[str]) -> str:
    needed = [name for name in stored if not name.startswith(OPTIONAL_PREFIXES)]
    missing = [name for name in needed if name not in present]
    return (f"{{dir}}/model.safetensors: lacks {len(missing)} of the {len(needed)} tensors config.json's model needs, "
            f"e.g. {missing[:5]}; it is not a checkpoint of this config (re-save the model)")


def _json(document: Any) -> str:
    return json.dumps(document, indent=2) + "\n"


def _header_only(header: dict[str, Any]) -> bytes:
    """A safetensors file with this JSON header and no data."""
    text = json.dumps(header).encode("utf-8")
    return struct.pack("<Q", len(text)) + text


def _card(robot_id: str) -> dict[str, Any]:
    return {"id": robot_id, "name": robot_id.replace("_", " ").title(), "description": "A robot.",
            "capabilities": ["carry"], "limitations": ["slow"], "environments": ["indoor"]}


def cases() -> dict[str, tuple[str, str | bytes, str]]:
    """case name: (file it replaces, its content, the exact error)."""
    config, processor, tokenizer_config, stored = tiny_files()
    ids = config["robot_ids"]
    small = save({"no_image": torch.zeros(32), "robot_head.known": torch.ones(len(ids), dtype=torch.bool)})
    found: dict[str, tuple[str, str | bytes, str]] = {
        "weights_empty": (WEIGHTS, b"", "{dir}/model.safetensors: 0 bytes, empty or truncated (a safetensors file "
                                        "starts with an 8-byte header length)" + RESAVE),
        "weights_truncated_header": (WEIGHTS, small[:40], "{dir}/model.safetensors: not a valid safetensors file, it "
                                     "may be truncated or corrupt (SafetensorError: Error while deserializing header: "
                                     "invalid header length)" + RESAVE),
        "weights_truncated_data": (WEIGHTS, small[:-4], "{dir}/model.safetensors: not a valid safetensors file, it may "
                                   "be truncated or corrupt (SafetensorError: Error while deserializing header: "
                                   "incomplete metadata, file not fully covered)" + RESAVE),
        "weights_not_safetensors": (WEIGHTS, b"PK\x03\x04" + bytes(60), "{dir}/model.safetensors: not a valid "
                                    "safetensors file, it may be truncated or corrupt (SafetensorError: Error while "
                                    "deserializing header: invalid header length)" + RESAVE),
        "weights_no_tensors": (WEIGHTS, save({}), "{dir}/model.safetensors: holds no tensors; it is not a saved Ember "
                                                  "model"),
        "weights_metadata_only": (WEIGHTS, _header_only({"__metadata__": {"format": "pt"}}),
                                  "{dir}/model.safetensors: holds no tensors; it is not a saved Ember model"),
        "weights_complex_dtype": (WEIGHTS, save({"no_image": torch.zeros(2, dtype=torch.complex64)}),
                                  "{dir}/model.safetensors: tensor 'no_image' has element type C64, which Ember does "
                                  "not save (1 such tensor(s)); expected one of F64, F32, F16, BF16, I64, I32, I16, "
                                  "I8, U8, BOOL"),
        "weights_wrong_tensors": (WEIGHTS, save({"no_image": torch.zeros(7), "unrelated": torch.zeros(2)}),
                                  _lacks(stored, {"no_image"})),
    }
    config_cases = {
        "image_size_string": ({"image_size": "64"}, "field 'image_size': expected an integer, got '64' (str)"),
        "image_size_not_a_stride_multiple": ({"image_size": 40}, "field 'image_size': expected a multiple of 32 (the "
                                             "vision encoder's stride: one visual token per 32x32 cell), got 40"),
        "image_size_too_small": ({"image_size": 8}, "field 'image_size': expected an integer in [32, 1024], got 8"),
        "lm_layers_negative": ({"lm_layers": -1}, "field 'lm_layers': expected an integer in [1, 64], got -1"),
        "lm_layers_float": ({"lm_layers": 1.5}, "field 'lm_layers': expected an integer, got 1.5 (float)"),
        "lm_heads_not_dividing_hidden": ({"lm_heads": 3}, "field 'lm_hidden': 32 is not divisible by lm_heads (3); "
                                         "each attention head gets lm_hidden / lm_heads dimensions"),
        "lm_too_large": ({"lm_layers": 64, "lm_hidden": 8192}, "field 'lm_hidden': lm_layers 64 x lm_hidden 8192 make "
                         "a language model of ~5.15e+10 parameters; the limit is 2e+09"),
        "max_task_chars_string": ({"max_task_chars": "x"}, "field 'max_task_chars': expected an integer, got 'x' (str)"),
        "max_reasoning_tokens_5000": ({"max_reasoning_tokens": 5000}, "field 'max_reasoning_tokens': lm_context 1024 "
                                      "cannot hold 1 image tokens, a short prompt (32), max_reasoning_tokens 5000, "
                                      "max_plan_tokens 16 and 3 markers (5052 tokens in all); raise lm_context or "
                                      "lower the generation limits"),
        "max_plan_tokens_zero": ({"max_plan_tokens": 0}, "field 'max_plan_tokens': expected an integer >= 1, got 0"),
        "lm_context_10": ({"lm_context": 10}, "field 'lm_context': lm_context 10 cannot hold 1 image tokens, a short "
                          "prompt (32), max_reasoning_tokens 24, max_plan_tokens 16 and 3 markers (76 tokens in all); "
                          "raise lm_context or lower the generation limits"),
        "head_dropout_above_1": ({"head_dropout": 1.5}, "field 'head_dropout': expected a finite number in [0, 1), "
                                 "got 1.5"),
        "memory_threshold_string": ({"memory_threshold": "high"}, "field 'memory_threshold': expected a number, got "
                                    "'high' (str)"),
        "freeze_vision_string": ({"freeze_vision": "yes"}, "field 'freeze_vision': expected true or false, got 'yes' "
                                 "(str)"),
        "scene_tags_unknown": ({"scene_tags": ["moon"]}, "field 'scene_tags': unknown scene tag 'moon'; known: "
                               "underwater, aerial, indoor, outdoor, rough_terrain"),
        "robot_ids_empty": ({"robot_ids": []}, "field 'robot_ids': expected at least one robot id; a saved model lists "
                            "the ids of its head's rows"),
        "robot_ids_duplicate": ({"robot_ids": ids + ids[:1]}, "field 'robot_ids': 'drone' is listed twice"),
        "robot_ids_invalid": ({"robot_ids": ["Drone!"]}, "field 'robot_ids': 'Drone!' is not a valid robot id; ids are "
                              "lower_snake_case such as 'underwater_robot'"),
    }
    for name, (changes, error) in config_cases.items():
        found[f"config_{name}"] = (CONFIG, _json({**config, **changes}), BAD_CONFIG % error)
    found["config_vision_encoder_unknown"] = (  # a valid config whose model cannot be built
        CONFIG, _json({**config, "vision_encoder": "resnet50"}),
        "{dir}/config.json: cannot build its model: unknown vision part 'resnet50'; registered: repvit_m0_9, "
        "repvit_m1_0, repvit_m1_1, repvit_m1_5")
    found["config_unknown_field"] = (CONFIG, _json({**config, "colour": "red"}), BAD_CONFIG % (
        "unknown EmberVLM config field(s) 'colour'; known: " + ", ".join(sorted(config))))
    found["config_not_an_object"] = (CONFIG, "[1, 2]\n", BAD_CONFIG % "expected a JSON object of EmberVLM config "
                                     "fields, got [1, 2] (list)")
    found["config_not_json"] = (CONFIG, "{\"image_size\": 32,", "{dir}/config.json: not valid JSON (Expecting "
                                "property name enclosed in double quotes at line 1, column 19)")
    identity = {"scale": 1.0, "margin": 0.0, "bias": 0.0}
    processor_cases = {
        "calibration_scale_negative": ({"calibration": {**identity, "scale": -1}}, "field 'calibration.scale': "
                                       "expected a finite number in [0.001, 1000], got -1"),
        "calibration_scale_zero": ({"calibration": {**identity, "scale": 0}}, "field 'calibration.scale': expected a "
                                   "finite number in [0.001, 1000], got 0"),
        "calibration_margin_negative": ({"calibration": {**identity, "margin": -0.5}}, "field 'calibration.margin': "
                                        "expected a finite number in [0, 1000], got -0.5"),
        "calibration_scale_string": ({"calibration": {**identity, "scale": "1.0"}}, "field 'calibration.scale': "
                                     "expected a number, got '1.0' (str)"),
        "calibration_not_an_object": ({"calibration": 2.5}, "field 'calibration': expected a JSON object of "
                                      "calibration fields, got 2.5 (float)"),
        "image_tokens_zero": ({"image_tokens": 0}, "field 'image_tokens': expected an integer in [1, 10000000], got 0"),
        "max_task_chars_bool": ({"max_task_chars": True}, "field 'max_task_chars': expected an integer, got True (bool)"),
        "image_slots_unknown": ({"image_slots": "above"}, "field 'image_slots': 'above' is not one of after_cards, "
                                "before_cards"),
    }
    for name, (changes, error) in processor_cases.items():
        found[f"processor_{name}"] = (PROCESSOR, _json({**processor, **changes}), BAD_PROCESSOR % error)
    legacy = {key: value for key, value in processor.items() if key != "calibration"}
    found["processor_temperature_negative"] = (PROCESSOR, _json({**legacy, "temperature": -1}), BAD_PROCESSOR % (
        "field 'temperature': expected a finite number in [0.001, 1000], got -1"))
    found["processor_calibration_nan"] = (PROCESSOR, _json(processor).replace('"scale": 1.0', '"scale": NaN'),
                                          "{dir}/processor_config.json: not valid JSON (JSON has NaN, which is not "
                                          "JSON; send a number or null)")
    found["processor_missing_field"] = (PROCESSOR, _json({k: v for k, v in processor.items() if k != "image_size"}),
                                        BAD_PROCESSOR % "field 'image_size': missing")
    found["processor_image_size_not_the_models"] = (
        PROCESSOR, _json({**processor, "image_size": 64}),
        "{dir}/processor_config.json: field 'image_size': 64 does not match the model (32, from its config.json); "
        "re-save the model")
    if "max_prompt_tokens" in processor:
        found["processor_prompt_longer_than_the_context"] = (
            PROCESSOR, _json({**processor, "max_prompt_tokens": 5000}),
            "{dir}/processor_config.json: field 'max_prompt_tokens': 5000 is more than the model's lm_context 1024 "
            "leaves beside max_reasoning_tokens, max_plan_tokens and their markers (981); re-save the model")
    found["tokenizer_config_not_an_object"] = (
        "tokenizer_config.json", "[1]\n", "{dir}: its tokenizer files (tokenizer.json, tokenizer_config.json) cannot be "
        "used (AttributeError: 'list' object has no attribute 'get'); re-save the model")
    found["tokenizer_config_without_eos_token"] = (
        "tokenizer_config.json", _json({**tokenizer_config, "eos_token": None}), "{dir}: its tokenizer files "
        "(tokenizer.json, tokenizer_config.json) cannot be used (ValueError: it has no end-of-text token (eos_token "
        "is None)); re-save the model")
    cards = [_card(robot) for robot in ids]
    fleet_cases = {
        "duplicate_ids": ({"robots": cards + cards[:1]}, "field 'robots': robot id or name 'drone' is used by two "
                          "robot types"),
        "ids_not_the_cards": ({"ids": ids[::-1], "robots": cards}, "field 'ids': %s is not the ids of the cards in "
                              "'robots' (%s); the record was edited by hand"),
        "card_missing_a_field": ({"robots": [{"id": "drone", "name": "Drone"}]}, "field 'robots[0]': missing 4 "
                                 "required positional arguments: 'description', 'capabilities', 'limitations', and "
                                 "'environments'"),
        "card_with_a_bad_id": ({"robots": [_card("Drone!")]}, "field 'robots[0].id': 'Drone!' is not a valid id; use "
                               "lower_snake_case such as 'underwater_robot'"),
        "no_robots": ({"robots": []}, "field 'robots': expected a non-empty list of robot cards, got []"),
    }
    for name, (record, error) in fleet_cases.items():
        if name == "ids_not_the_cards":
            from ember_core.excerpt import excerpt

            error = error % (excerpt(ids[::-1]), ", ".join(ids))
        found[f"fleet_{name}"] = (FLEET, _json(record), BAD_FLEET % error)
    found["fleet_not_the_configs_robots"] = (
        FLEET, _json({"robots": cards[:2]}),
        "{dir}/fleet.json: robots %s are not the head's rows %s of {dir}/config.json; re-save the model, or pass the "
        "fleet to use (--robots)" % (ids[:2], ids))
    return found


def write_corpus(out: Path = OUT) -> list[str]:
    """Write every case into `out` (replacing what is there) and return the case names."""
    if out.exists():
        shutil.rmtree(out)
    found = cases()
    for case, (name, content, error) in found.items():
        folder = out / case
        folder.mkdir(parents=True)
        if isinstance(content, bytes):
            (folder / name).write_bytes(content)
        else:
            (folder / name).write_text(content, encoding="utf-8")
        (folder / "expect.json").write_text(_json({"file": name, "error": error}), encoding="utf-8")
    return sorted(found)


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else OUT
    print(f"wrote {len(write_corpus(target))} cases into {target}")
