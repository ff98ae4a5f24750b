"""What a loaded model is: name, sha, parameters per part, config, fleet, vocabulary and calibration."""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # only read here: the caller has loaded them
    from ember_core.fleet import Fleet
    from ember_core.processor import EmberProcessor


def model_info(model: Any, processor: EmberProcessor, fleet: Fleet, parameters: dict[str, int] | None) -> dict[str, Any]:
    """The JSON-ready description `ember model info --json` prints and the server's GET /model answers.

    `model` is an EmberVLM or a Selector's backend (ember_core.backend): what has a name, sha and
    config. `parameters` counts them per part (`EmberVLM.parameter_counts`); None for an ONNX export.
    """
    return {"name": model.name, "sha": model.sha, "parameters": parameters, "config": model.config.to_dict(),
            "fleet": {"robots": fleet.ids, "hash": fleet.hash}, "vocab_size": len(processor.tokenizer),
            "calibration": dataclasses.asdict(processor.config.calibration)}
