"""Constrained decoding of the explanation program: the language model makes every choice a slot leaves.

Fixed text is fed to the model in chunks, never decoded. In a slot the allowed next tokens are the
continuations of a `Choice`'s options (a trie) or the next token of a `Copy`'s source; where the slot may
end, the first token of the text after it competes with them. A step with one allowed token and no
end is taken without asking the model. Every other step is a decision point: the model scores the
candidates (`EmberVLM.token_scores`) and the best one is taken.

`walk` goes through a program once and is shared by inference (`decode`: the model picks, the KV
cache of the prompt from the selection pass is extended in place) and training (`teacher_forced`:
the targets pick, and every decision point is recorded for the loss), so the model is trained on
exactly the decisions it makes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from ember_core.explanation import MAX_COPY_WORDS, Choice, ExplanationContext, Slot, run_program

Relevance = Callable[[Sequence[str]], dict[str, float]]  # card phrase -> relevance to the task (ember_core.relevance)


def no_relevance(phrases: Sequence[str]) -> dict[str, float]:
    """Relevance 0 for every phrase: the language model decides alone."""
    return dict.fromkeys(phrases, 0.0)


MAX_CACHED_TEXTS = 4096  # fixed texts and card options, whose ids are reused across requests


class ExplanationTooLong(ValueError):
    """The explanation would run past the language model's context."""


@dataclass
class DecisionPoint:
    """A step where the model chooses: the index of the token whose hidden state decides (in the ids
    after the prompt), the candidate ids (the slot's end token last when it may end), the relevance
    of each to the task (the best card phrase it can still become; 0 in a Copy), the one taken."""

    position: int
    candidates: list[int]
    relevance: list[float]
    chosen: int


@dataclass
class Walk:
    """The ids after the prompt (prefix, then the explanation), the text pieces (text, chosen?), the decision points."""

    ids: list[int]
    pieces: list[tuple[str, bool]] = field(default_factory=list)
    points: list[DecisionPoint] = field(default_factory=list)
    chosen_tokens: int = 0


Pick = Callable[[Walk, Slot, list[int], list[int], list[float]], int]


class _Trie:
    """Token-id sequences of a Choice's options: the ids allowed after a prefix, and whether it is complete."""

    def __init__(self, sequences: list[list[int]]):
        self.sequences = sequences

    def step(self, prefix: list[int]) -> tuple[set[int], bool]:
        n = len(prefix)
        matching = [s for s in self.sequences if s[:n] == prefix]
        return {s[n] for s in matching if len(s) > n}, any(len(s) == n for s in matching)


class _Span:
    """Whole-word prefixes of a source text's token ids, at most `max_words` words.

    `starts_word[id]`: the token begins a word (a byte-level BPE token with a leading space);
    `inside_word[id]`: it continues the word before it (no leading space, starts with a letter or digit).
    """

    def __init__(self, ids: list[int], starts_word: dict[int, bool], inside_word: dict[int, bool], max_words: int):
        self.ids, self.starts_word, self.inside_word, self.max_words = ids, starts_word, inside_word, max_words

    def step(self, prefix: list[int]) -> tuple[set[int], bool]:
        n = len(prefix)
        if prefix != self.ids[:n]:
            return set(), False
        following = self.ids[n] if n < len(self.ids) else None
        words = sum(self.starts_word[token] for token in prefix)
        can_end = n > 0 and (following is None or not self.inside_word[following])
        allowed = {following} if following is not None and (words < self.max_words or self.inside_word[following]) else set()
        return allowed, can_end


class StructuredDecoder:
    """Walks explanation programs with one tokenizer, caching the ids of fixed texts and options."""

    def __init__(self, tokenizer: Any, max_tokens: int):
        self.tokenizer, self.max_tokens = tokenizer, max_tokens
        self._ids: dict[str, list[int]] = {}

    def encode(self, text: str, cache: bool = True) -> list[int]:
        if text not in self._ids:
            ids = self.tokenizer(text, split_special_tokens=True)["input_ids"]
            if not cache:
                return ids
            if len(self._ids) >= MAX_CACHED_TEXTS:
                self._ids.clear()
            self._ids[text] = ids
        return self._ids[text]

    def walk(self, context: ExplanationContext, prefix_ids: list[int], pick: Pick, relevance: Relevance) -> Walk:
        """Go through the program after `prefix_ids`; at each decision point `pick(walk, slot, chosen,
        candidates, relevance)` returns the token to take (the slot's end token ends it); `relevance`
        scores card phrases for the task."""
        walk = Walk(ids=list(prefix_ids))

        def fixed(text: str) -> None:
            walk.ids += self.encode(text)
            walk.pieces.append((text, False))

        def fill(slot: Slot) -> str:
            answer = self.tokenizer.decode(self._fill(walk, slot, pick, relevance))
            walk.pieces.append((answer, True))
            return answer

        run_program(context, fixed, fill)
        return walk

    def decode(self, context: ExplanationContext, prefix_ids: list[int], feed: Callable[[list[int]], Any],
               scores: Callable[[Any, list[int], list[float]], Any], room: int, relevance: Relevance) -> Walk:
        """The model's explanation: `feed(ids)` runs the model on ids after the cached prompt and returns the
        last hidden state; `scores(hidden, ids, relevance)` scores candidates. At most `room` tokens are fed
        (ExplanationTooLong past it) and at most `max_tokens` chosen (then each slot ends where it may)."""
        fed = 0

        def pick(walk: Walk, slot: Slot, chosen: list[int], candidates: list[int], bias: list[float]) -> int:
            nonlocal fed
            if len(walk.ids) > room:
                raise ExplanationTooLong(f"the explanation needs more than the {room} tokens the language model's "
                                         f"context leaves after this prompt; select fewer robots or use a longer context")
            end = self._end_id(slot)
            if walk.chosen_tokens >= self.max_tokens and end in candidates:
                return end
            hidden = feed(walk.ids[fed:])
            fed = len(walk.ids)
            return candidates[int(scores(hidden, candidates, bias).argmax())]

        return self.walk(context, prefix_ids, pick, relevance)

    def teacher_forced(self, context: ExplanationContext, prefix_ids: list[int], answer: Callable[[Slot], str],
                       relevance: Relevance) -> Walk:
        """The walk that takes `answer(slot)` in every slot, with its decision points, for training."""
        current: list = [None, []]  # the slot being filled and its target ids

        def pick(walk: Walk, slot: Slot, chosen: list[int], candidates: list[int], bias: list[float]) -> int:
            if current[0] is not slot:
                current[:] = [slot, self.encode(answer(slot), cache=isinstance(slot, Choice))]
            wanted = current[1]
            token = wanted[len(chosen)] if len(chosen) < len(wanted) else self._end_id(slot)
            if token not in candidates:
                raise ValueError(f"the target {self.tokenizer.decode(wanted)!r} cannot be decoded in this slot "
                                 f"(after {self.tokenizer.decode(chosen)!r})")
            return token

        return self.walk(context, prefix_ids, pick, relevance)

    def _end_id(self, slot: Slot) -> int:
        return self.encode(slot.then)[0]

    def _constraint(self, slot: Slot) -> _Trie | _Span:
        if isinstance(slot, Choice):
            return _Trie([self.encode(option) for option in slot.options])
        ids = self.encode(slot.source, cache=False)  # the task: new each time
        tokens = self.tokenizer.convert_ids_to_tokens(ids)
        starts = {token_id: token.startswith("Ġ") for token_id, token in zip(ids, tokens)}
        inside = {token_id: not token.startswith("Ġ") and token[:1].isalnum() for token_id, token in zip(ids, tokens)}
        return _Span(ids, starts, inside, MAX_COPY_WORDS)

    def _fill(self, walk: Walk, slot: Slot, pick: Pick, relevance: Relevance) -> list[int]:
        """The slot's token ids, appended to `walk.ids` as they are taken."""
        constraint = self._constraint(slot)
        end = self._end_id(slot)
        options: list[tuple[list[int], float]] = []
        if isinstance(slot, Choice):
            scored = relevance(slot.options)
            options = [(self.encode(option), scored[option]) for option in slot.options]
        chosen: list[int] = []
        while True:
            allowed, can_end = constraint.step(chosen)
            if not allowed:
                return chosen
            if len(allowed) == 1 and not can_end:
                token = next(iter(allowed))
            else:
                candidates = sorted(allowed - {end}) + [end] if can_end else sorted(allowed)
                bias = [_best(options, chosen, None if token == end and can_end else token) for token in candidates]
                token = pick(walk, slot, chosen, candidates, bias)
                walk.points.append(DecisionPoint(len(walk.ids) - 1, candidates, bias, candidates.index(token)))
                if can_end and token == end:
                    return chosen
            chosen.append(token)
            walk.ids.append(token)
            walk.chosen_tokens += 1


def _best(options: list[tuple[list[int], float]], chosen: list[int], token: int | None) -> float:
    """The relevance of the best option `chosen` + `token` can still become (`token` None: `chosen` complete)."""
    prefix = chosen if token is None else chosen + [token]
    fits = [score for ids, score in options if (ids == prefix if token is None else ids[:len(prefix)] == prefix)]
    return max(fits, default=0.0)
