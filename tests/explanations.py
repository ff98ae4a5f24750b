"""Writing an explanation program's text without a model, for tests: a function answers each slot."""
from __future__ import annotations

from typing import Callable

from ember_core.explanation import ExplanationContext, Slot, run_program


def write_explanation(context: ExplanationContext, fill: Callable[[Slot], str]) -> list[tuple[str, bool]]:
    """The program's pieces of text with `fill` answering each slot, each marked chosen (True) or fixed."""
    pieces: list[tuple[str, bool]] = []

    def chosen(slot: Slot) -> str:
        pieces.append((fill(slot), True))
        return pieces[-1][0]

    run_program(context, lambda text: pieces.append((text, False)), chosen)
    return pieces
