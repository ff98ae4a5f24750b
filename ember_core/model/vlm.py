"""EmberVLM: vision encoder -> projector -> language model -> robot head, composed in one nn.Module."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from safetensors.torch import save_file

from ember_core.card_classifier import fit_card_classifier
from ember_core.model import language as _language  # noqa: F401  (registers the language parts)
from ember_core.model import text_encoder as _text_encoder  # noqa: F401  (registers the text parts)
from ember_core.model import vision as _vision  # noqa: F401  (registers the vision parts)
from ember_core.model.config import CONFIG_FILE, EmberVLMConfig
from ember_core.model.heads import ExplanationAdapter, MemoryVote, RobotHead
from ember_core.model.language import hidden_size
from ember_core.model.loading import (
    MEMORY_ROBOTS,
    NEW_ROBOT_MEMORY,
    TASK_MEMORY,
    check_finite,
    check_stored_tensors,
    file_sha,
    load_matching,
    remap_robot_rows,
    stored_state,
)
from ember_core.model.new_robot_encoder import load_new_robot_encoder
from ember_core.model.registry import create_part
from ember_core.model.text_tokenizer import TextTokenizer
from ember_core.model.tokenizer import IMAGE, SELECTION, load_tokenizer, special_token_ids, validate_embeddings
from ember_core.model.weights import load_state_dict_file, safetensors_header
from ember_core.new_robot_steps import fit_new_robot_classifier, fleet_steps, labelled_step_embeddings
from ember_core.relevance import embed_by_length

WEIGHTS_FILE = "model.safetensors"


class EmberVLM(nn.Module):
    """Scores every robot of a fleet for an image + task prompt and generates reasoning text.

    Token sequences carry `<|image|>` placeholders (as many as `vision.num_tokens`) whose embeddings
    are replaced by visual tokens, or by the learned `no_image` vector for text-only requests. The
    robot head reads the last hidden state at `<|robot_selection|>`. Robot cards (token ids set with
    `set_cards`) are embedded by the same LM for the capability-aware part of the head.
    """

    def __init__(self, config: EmberVLMConfig, tokenizer: TextTokenizer):
        super().__init__()
        if not config.robot_ids:
            raise ValueError("config.robot_ids is empty; build the model for a fleet (ember_core.pretrained.build_model)")
        num_robots = len(config.robot_ids)
        self.config = config
        # What a result names as its model: "<preset>:<directory>" and the weights file's sha once loaded.
        self.name, self.sha = f"{config.preset} (random init)", "random-init"
        self.special_ids = special_token_ids(tokenizer)
        self.eos_token_id = int(tokenizer.eos_token_id)
        self.language_model = create_part(
            "language", config.language_model, name_or_path=config.lm_name_or_path, vocab_size=len(tokenizer),
            layers=config.lm_layers, hidden=config.lm_hidden, heads=config.lm_heads, context=config.lm_context,
            dropout=config.lm_dropout, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        )
        validate_embeddings(self.language_model, tokenizer)
        width = hidden_size(self.language_model)
        self.vision = create_part(
            "vision", config.vision_encoder, out_dim=width, image_size=config.image_size,
            weights=config.vision_weights, frozen=config.freeze_vision,
        )
        self.no_image = nn.Parameter(torch.zeros(width))
        self.explanation_adapter = ExplanationAdapter(width)  # the explanation's choices (`token_scores`)
        self.scene_head = nn.Linear(width, len(config.scene_tags)) if config.scene_tags else None
        self.text_encoder = None
        if config.text_encoder:
            self.text_encoder = create_part("text", config.text_encoder, name_or_path=config.text_encoder_path,
                                            frozen=config.freeze_text_encoder)
        self.new_robot_encoder = None
        if config.new_robot_encoder:
            self.new_robot_encoder = load_new_robot_encoder(self.text_encoder, config.new_robot_encoder)
        self.robot_head = RobotHead(
            width, num_robots, config.head_hidden, config.head_mid, config.head_dropout, config.card_dim,
            text_dim=self.text_encoder.dim if self.text_encoder is not None else 0, card_top_k=config.card_top_k,
            memory_threshold=config.memory_threshold, memory_sharpness=config.memory_sharpness,
            memory_vote=MemoryVote(config.memory_neighbours, config.memory_vote_temperature, config.memory_vote_gain,
                                   config.memory_vote_threshold),
            new_robot=(config.new_robot_scale, config.new_robot_bias), new_robot_encoder=self.new_robot_encoder is not None,
        )
        # Card token ids, set by `set_cards`: for the LM, and for the sentence encoder when there is one.
        for name in ("card_input_ids", "card_attention_mask", "card_text_input_ids", "card_text_attention_mask"):
            self.register_buffer(name, torch.ones(num_robots, 1, dtype=torch.long), persistent=False)
        self.register_buffer("card_text_owner", torch.arange(num_robots), persistent=False)
        self._card_cache: torch.Tensor | None = None
        # The card classifier and the card embeddings it was fitted on (refitted when they are other tensors).
        self._classifier_cache: tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]] | None = None
        # The new-robot encoder's card embeddings and their classifier (`new_robot_cards`), once computed.
        self._new_robot_cards: tuple[torch.Tensor, torch.Tensor] | None = None
        # The new-robot encoder's embeddings of the labelled job steps (`ember_core.new_robot_steps`): that encoder is
        # frozen, so they are computed once, whatever the fleet.
        self._new_robot_steps: np.ndarray | None = None

    @property
    def num_robots(self) -> int:
        return self.robot_head.num_robots

    @property
    def image_token_id(self) -> int:
        return self.special_ids[IMAGE]

    @property
    def selection_token_id(self) -> int:
        return self.special_ids[SELECTION]

    @property
    def external_prefixes(self) -> tuple[str, ...]:
        """State-dict prefixes of frozen pretrained parts that checkpoints do not store."""
        prefixes = ("new_robot_encoder.",) if self.new_robot_encoder is not None else ()
        if self.text_encoder is not None and self.text_encoder.frozen:
            prefixes = ("text_encoder.", *prefixes)
        return prefixes

    def set_cards(self, cards: dict[str, torch.Tensor]) -> None:
        """Token ids of each robot's capability card in fleet order, (N, L) each: `input_ids` and
        `attention_mask` for the LM; with a text encoder also `text_input_ids`/`text_attention_mask`
        (M, L) for the card phrases and `text_owner` (M,), the robot index of each phrase."""
        if cards["input_ids"].shape[0] != self.num_robots:
            raise ValueError(f"got {cards['input_ids'].shape[0]} robot cards for a head of {self.num_robots} robots")
        device = self.no_image.device
        for key, value in cards.items():
            setattr(self, f"card_{key}", value.to(device))
        self._card_cache = self._new_robot_cards = None

    def train(self, mode: bool = True) -> EmberVLM:
        self._card_cache = None  # the LM changes while training; cached card embeddings would go stale
        return super().train(mode)

    def card_embeddings(self) -> torch.Tensor:
        """(N, C): each card's sentence embedding, or the LM's mean hidden state over the card.

        Cached while nothing that computes them can change: in eval mode, or always for a frozen encoder.
        """
        frozen = self.text_encoder is not None and self.text_encoder.frozen
        if self._card_cache is not None and (frozen or not self.training):
            return self._card_cache
        if self.text_encoder is not None:
            pooled = self.text_encoder(self.card_text_input_ids, self.card_text_attention_mask)
            if frozen or not self.training:
                self._card_cache = pooled.detach()  # a cached graph would be freed by the first backward
            return pooled
        embeds = self.language_model.get_input_embeddings()(self.card_input_ids)
        hidden = self.language_model(
            inputs_embeds=embeds, attention_mask=self.card_attention_mask, output_hidden_states=True, use_cache=False,
        ).hidden_states[-1]
        mask = self.card_attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        if not self.training:
            self._card_cache = pooled.detach()
        return pooled

    def card_classifier(self, cards: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The card classifier's weight and bias (`ember_core.card_classifier`) for the card phrase embeddings
        `cards` (those of `card_embeddings`), fitted once per embedding; None without a sentence encoder."""
        if self.text_encoder is None:
            return None
        if self._classifier_cache is None or self._classifier_cache[0] is not cards:
            weight, bias = fit_card_classifier(cards.detach().float().cpu().numpy(), self.card_text_owner.cpu().numpy(),
                                               self.num_robots)
            self._classifier_cache = (cards, (torch.from_numpy(weight).to(cards.device),
                                              torch.from_numpy(bias).to(cards.device)))
        return self._classifier_cache[1]

    def new_robot_cards(self) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """The card phrases' embeddings by the new-robot encoder (M, T) and its card classifier, fitted on them and
        on the fleet's labelled job steps (`ember_core.new_robot_steps`)."""
        if self._new_robot_cards is None:
            cards = self.new_robot_encoder(self.card_text_input_ids, self.card_text_attention_mask).detach()
            if self._new_robot_steps is None:
                self._new_robot_steps = self._labelled_step_embeddings()
            rows, step_owner = fleet_steps(self.config.robot_ids)
            weight, bias = fit_new_robot_classifier(cards.float().cpu().numpy(), self.card_text_owner.cpu().numpy(),
                                                    self.num_robots, self._new_robot_steps[rows], step_owner)
            self._new_robot_cards = (cards, (torch.from_numpy(weight).to(cards.device),
                                             torch.from_numpy(bias).to(cards.device)))
        return self._new_robot_cards

    def _labelled_step_embeddings(self) -> np.ndarray:
        """The new-robot encoder's embeddings of the labelled job steps, cached under its digest."""
        encoder = {"new_robot_encoder": self.new_robot_encoder.digest(), "text_encoder": str(self.config.text_encoder)}
        return labelled_step_embeddings(encoder, self._new_robot_embeddings)

    @torch.no_grad()
    def _new_robot_embeddings(self, texts: list[str]) -> np.ndarray:
        """The new-robot encoder's embeddings (n, T) of texts (`embed_by_length`)."""
        def embed_batch(batch: list[str]) -> np.ndarray:
            inputs = self.text_encoder.tokenize(batch)
            return self.new_robot_encoder(**{key: value.to(self.no_image.device) for key, value in
                                             inputs.items()}).float().cpu().numpy()
        return embed_by_length(texts, embed_batch)

    def embed(self, input_ids: torch.Tensor, visual: torch.Tensor | None = None,
              has_image: torch.Tensor | None = None) -> torch.Tensor:
        """Token embeddings with the `<|image|>` positions filled by visual tokens or `no_image`.

        visual (B, K, H): the vision part's tokens, or None; has_image (B,) bool marks rows whose pixels are real.
        """
        embeds = self.language_model.get_input_embeddings()(input_ids)
        slots = input_ids == self.image_token_id
        per_row = slots.sum(1)
        if bool((per_row != 0).any()) and bool((per_row != self.vision.num_tokens).any()):
            raise ValueError(f"each sequence needs exactly {self.vision.num_tokens} <|image|> tokens, got {per_row.tolist()}")
        fill = self.no_image.to(embeds.dtype).expand(input_ids.shape[0], self.vision.num_tokens, -1)
        if visual is not None:
            visual = visual.to(embeds.dtype)
            real = torch.ones(input_ids.shape[0], dtype=torch.bool, device=input_ids.device) if has_image is None else has_image
            fill = torch.where(real.view(-1, 1, 1), visual, fill)
        embeds = embeds.clone()
        embeds[slots] = fill[per_row > 0].reshape(-1, embeds.shape[-1])
        return embeds

    def visual_tokens(self, pixel_values: torch.Tensor, has_image: torch.Tensor | None = None) -> torch.Tensor | None:
        """The vision part's tokens (B, K, H) of the rows that show an image, zeros for the others (None if none does).

        A batch pads image-less rows with blank pixels (`has_image` False); encoding only the real ones keeps
        those blanks out of a training BatchNorm's batch statistics. At inference nothing changes but the
        work saved: BatchNorm then normalises each image with its running statistics. Under SyncBatchNorm
        every row goes through, blank ones too: its statistics are collectives that every process of a
        distributed run joins at each training step, with or without images of its own.
        """
        if has_image is None or bool(has_image.all()) or any(
                isinstance(layer, nn.SyncBatchNorm) for layer in self.vision.modules()):
            return self.vision(pixel_values)
        if not bool(has_image.any()):
            return None
        shown = self.vision(pixel_values[has_image])
        visual = shown.new_zeros((pixel_values.shape[0], *shown.shape[1:]))
        visual[has_image] = shown
        return visual

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, pixel_values: torch.Tensor | None = None,
                has_image: torch.Tensor | None = None, use_cache: bool = False,
                task_input_ids: torch.Tensor | None = None, task_attention_mask: torch.Tensor | None = None,
                ) -> dict[str, torch.Tensor]:
        """Robot logits (B, N) from the `<|robot_selection|>` state, the LM's last hidden states (B, T, H),
        with pixels and a scene head the scene-tag logits (B, len(config.scene_tags)), and with
        `use_cache` the KV cache. Token scores are left to `token_scores`, for the few positions and
        candidates that need them: (B, T, 50k) floats for a whole batch would be gigabytes.
        """
        positions = (input_ids == self.selection_token_id).int()
        if bool((positions.sum(1) != 1).any()):
            raise ValueError("each sequence needs exactly one <|robot_selection|> token")
        visual = self.visual_tokens(pixel_values, has_image) if pixel_values is not None else None
        output = self.language_model(
            inputs_embeds=self.embed(input_ids, visual, has_image), attention_mask=attention_mask,
            output_hidden_states=True, use_cache=use_cache, logits_to_keep=1,
        )
        hidden = output.hidden_states[-1]
        rows = torch.arange(input_ids.shape[0], device=input_ids.device)
        selection_state = hidden[rows, positions.argmax(1)]
        task_embedding = None
        if self.text_encoder is not None:
            if task_input_ids is None:
                raise ValueError("this model has a text encoder: pass task_input_ids/task_attention_mask")
            task_embedding = self.task_embedding(task_input_ids, task_attention_mask).to(selection_state.dtype)
        owner = self.card_text_owner if self.text_encoder is not None else None
        cards = self.card_embeddings()
        new_robot = None
        if self.new_robot_encoder is not None and not bool(self.robot_head.known.all()):
            with torch.no_grad():
                new_robot = (self.new_robot_encoder(task_input_ids, task_attention_mask).to(selection_state.dtype),
                             self.new_robot_cards()[1])
        result = self.robot_head(selection_state, cards.to(selection_state.dtype), task_embedding, owner,
                                 self.card_classifier(cards), new_robot)
        result["hidden_states"] = hidden
        if task_embedding is not None:
            result["task_embedding"] = task_embedding
        if visual is not None and self.scene_head is not None:
            result["scene_logits"] = self.scene_head(visual.mean(1))
        if use_cache:
            result["cache"] = output.cache
        return result

    def token_scores(self, hidden: torch.Tensor, candidates: torch.Tensor | list[int],
                     relevance: torch.Tensor | list[float] | None = None) -> torch.Tensor:
        """Scores of candidate tokens: hidden (..., H), candidate ids (..., K), their relevance (..., K) -> (..., K).

        The hidden states go through the explanation adapter and are scored against the candidates'
        rows of the LM's output layer (never the whole vocabulary), plus the adapter's learned weight
        times each candidate's relevance to the task (`ember_core.relevance`; none: 0).
        """
        output = self.language_model.get_output_embeddings()
        candidates = torch.as_tensor(candidates, device=hidden.device)
        adapted = self.explanation_adapter(hidden)
        scores = (output.weight[candidates].to(adapted.dtype) @ adapted.unsqueeze(-1)).squeeze(-1)
        if output.bias is not None:
            scores = scores + output.bias[candidates]
        if relevance is not None:
            relevance = torch.as_tensor(relevance, device=hidden.device, dtype=scores.dtype)
            scores = scores + self.explanation_adapter.relevance_weight.to(scores.dtype) * relevance
        return scores

    def task_embedding(self, task_input_ids: torch.Tensor, task_attention_mask: torch.Tensor) -> torch.Tensor | None:
        """The sentence embeddings (B, D) of tasks, None for a model without a sentence encoder."""
        return None if self.text_encoder is None else self.text_encoder(task_input_ids, task_attention_mask)

    @torch.no_grad()
    def feed(self, input_ids: list[int], cache: Any) -> torch.Tensor:
        """Run the LM on token ids after a KV cache (extended in place); the last position's hidden state (H,)."""
        ids = torch.tensor([input_ids], dtype=torch.long, device=self.no_image.device)
        output = self.language_model.base_model(input_ids=ids, cache=cache, use_cache=True)
        return output.last_hidden_state[0, -1]

    def parameter_counts(self) -> dict[str, int]:
        """Parameters per part (the LM's tied output embedding counted once)."""
        parts = {"vision": self.vision.backbone, "projector": self.vision.projector,
                 "language_model": self.language_model, "explanation_adapter": self.explanation_adapter,
                 "robot_head": self.robot_head}
        if self.text_encoder is not None:
            parts["text_encoder"] = self.text_encoder
        if self.new_robot_encoder is not None:
            parts["new_robot_encoder"] = self.new_robot_encoder.tuned  # its other layers are the text encoder's
        if self.scene_head is not None:
            parts["scene_head"] = self.scene_head
        counts = {name: sum(p.numel() for p in module.parameters()) for name, module in parts.items()}
        counts["other"] = self.no_image.numel()
        counts["total"] = sum(p.numel() for p in self.parameters())
        return counts

    # ---- saving and loading ----------------------------------------------------------------

    def save_pretrained(self, directory: str | os.PathLike, dtype: torch.dtype = torch.float32) -> None:
        """Write config.json and model.safetensors into an existing directory.

        `dtype=torch.float16` halves the weights file (the shipped model); loading casts back.
        """
        self.config.save(directory)
        save_file(stored_state(self, dtype), str(Path(directory) / WEIGHTS_FILE))

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, tokenizer: TextTokenizer | None = None,
                        robot_ids: list[str] | None = None) -> EmberVLM:
        """Load a saved model (tokenizer: the one saved beside it unless given), in eval mode.

        With `robot_ids` the head is laid out for that fleet: rows of robots the checkpoint knows
        move to their new index, a new robot is scored from its card alone (see heads.py).
        FileNotFoundError or ValueError naming the file when config.json or model.safetensors is not
        one Ember can use: the weights' header is checked against the config before a tensor is read.
        """
        path = require_model_dir(directory)
        config = EmberVLMConfig.load(path)
        weights = path / WEIGHTS_FILE
        header = safetensors_header(weights)
        saved_ids = list(config.robot_ids)
        if robot_ids is not None:
            config.robot_ids = list(robot_ids)
        try:
            model = cls(config, tokenizer or load_tokenizer(path))
        except ValueError as err:  # e.g. an unknown vision encoder or missing vision weights the config names
            raise ValueError(f"{path / CONFIG_FILE}: cannot build its model: {err}") from None
        try:
            check_stored_tensors(model, {name: info.shape for name, info in header.items()}, saved_ids)
            state = load_state_dict_file(weights)
            check_finite(state)
        except ValueError as err:
            message = str(err)
            raise ValueError(message if message.startswith(str(weights)) else f"{weights}: {message}") from None
        if config.robot_ids != saved_ids:
            state = remap_robot_rows(state, model.state_dict(), saved_ids, config.robot_ids)
        if TASK_MEMORY in state and TASK_MEMORY in model.state_dict():  # as many rows as the model had training tasks
            model.robot_head.set_task_memory(state[TASK_MEMORY], state.get(MEMORY_ROBOTS), state.get(NEW_ROBOT_MEMORY))
        load_matching(model, state)
        model.name, model.sha = f"{config.preset}:{path.name}", file_sha(weights)
        return model.eval()


def require_model_dir(directory: str | os.PathLike) -> Path:
    """`directory` as a Path; FileNotFoundError naming what is missing unless it holds a saved model's config and weights."""
    path = Path(directory)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: not an Ember model directory: no such directory (pass one written by "
                                f"save_pretrained)")
    missing = [name for name in (CONFIG_FILE, WEIGHTS_FILE) if not (path / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{path}: not an Ember model directory: {' and '.join(missing)} missing "
                                f"(needs {CONFIG_FILE} and {WEIGHTS_FILE}, written by save_pretrained)")
    return path
