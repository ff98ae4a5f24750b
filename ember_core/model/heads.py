"""Robot selection head: the seed's per-robot MLP blended with a capability-card scorer.

Two scorers read the hidden state at `<|robot_selection|>` (and, in presets with a sentence
encoder, the task's sentence embedding):
- `mlp`: the seed's head, in -> 384 (ReLU, dropout) -> 96 (ReLU, dropout) -> N, one logit per robot
  the checkpoint was trained with. It learns fleet-specific detail but knows robots only by index.
- `card`: a match between the request and each robot's capability card,
  `scale * cos(query, Wk c_i) + bias`. Without a sentence encoder c_i is the LM's mean hidden state
  over the card text. With one, each card phrase (capability, environment, role, description) is
  embedded on its own and the robot's similarity is the mean of its two best-matching phrases: a
  task matches one or two facts of a card, and a whole-card embedding blurs them (measured zero-shot
  on the novel-phrasing set: 0.55 hit@1 with phrases vs 0.48 with whole cards). The query is the
  (projected) task embedding plus a learned map of the LM state, which carries the image. With a
  sentence encoder the maps start as the identity, so an untrained card scorer is the zero-shot
  task-card similarity. It scores any robot that has a card, including one added after training.

For robot i the logit is `g * mlp_i + (1 - g) * card_i` when the MLP has a trained row for it
(`known[i]`), else `card_i` alone; g = sigmoid(gate) is learned. Loading a 5-robot checkpoint into
a 6-robot fleet copies the 5 trained MLP rows to their new positions by robot id and marks the new
robot unknown, so it is scored from its card until it is trained (see checkpoint.py). Training adds a
loss on the card logits alone so that this fallback is a calibrated scorer in its own right.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class RobotHead(nn.Module):
    def __init__(self, state_dim: int, num_robots: int, hidden: int = 384, mid: int = 96,
                 dropout: float = 0.1, card_dim: int = 128, text_dim: int = 0):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(state_dim + text_dim, hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, mid), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(mid, num_robots),
        )
        self.text_dim = text_dim
        if text_dim:
            card_dim = text_dim
            self.query = _identity(text_dim)
            self.key = _identity(text_dim)
            self.context = nn.Linear(state_dim, card_dim)
            nn.init.zeros_(self.context.weight)
            nn.init.zeros_(self.context.bias)
        else:
            self.query = nn.Linear(state_dim, card_dim)
            self.key = nn.Linear(state_dim, card_dim)
        self.card_scale = nn.Parameter(torch.tensor(10.0))
        self.card_bias = nn.Parameter(torch.tensor(0.0))
        self.gate = nn.Parameter(torch.tensor(0.0))
        self.register_buffer("known", torch.ones(num_robots, dtype=torch.bool))

    @property
    def num_robots(self) -> int:
        return int(self.known.numel())

    def forward(self, selection_state: torch.Tensor, card_embeddings: torch.Tensor,
                task_embedding: torch.Tensor | None = None, card_owner: torch.Tensor | None = None,
                ) -> dict[str, torch.Tensor]:
        """selection_state (B, H), card_embeddings (M, C), task_embedding (B, T) -> logits (B, N) and parts.

        `card_owner` (M,) gives the robot index of each card embedding (several phrases per robot);
        None means one embedding per robot, in fleet order.
        """
        if self.text_dim:
            if task_embedding is None:
                raise ValueError("this head needs the task's sentence embedding (the preset has a text encoder)")
            mlp_logits = self.mlp(torch.cat([selection_state, task_embedding], dim=-1))
            query = self.query(task_embedding) + self.context(selection_state)
        else:
            mlp_logits = self.mlp(selection_state)
            query = self.query(selection_state)
        keys = F.normalize(self.key(card_embeddings), dim=-1)
        similarity = F.normalize(query, dim=-1) @ keys.T
        if card_owner is not None:
            similarity = torch.stack([_top2_mean(similarity[:, card_owner == robot]) for robot in range(self.num_robots)], 1)
        card_logits = self.card_scale * similarity + self.card_bias
        gate = torch.sigmoid(self.gate)
        blended = gate * mlp_logits + (1 - gate) * card_logits
        logits = torch.where(self.known, blended, card_logits)
        return {"robot_logits": logits, "mlp_logits": mlp_logits, "card_logits": card_logits}


def _identity(dim: int) -> nn.Linear:
    layer = nn.Linear(dim, dim)
    nn.init.eye_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def _top2_mean(similarity: torch.Tensor) -> torch.Tensor:
    """Mean of the two largest similarities per row (the one there is, for a single phrase)."""
    return similarity.topk(min(2, similarity.shape[1]), dim=1).values.mean(1)
