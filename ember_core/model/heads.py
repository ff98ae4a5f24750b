"""Robot selection head: the seed's per-robot MLP blended with a capability-card scorer.

Two scorers read the hidden state at `<|robot_selection|>`:
- `mlp`: the seed's head, 384 -> 384 (ReLU, dropout) -> 96 (ReLU, dropout) -> N, one logit per robot
  the checkpoint was trained with. It learns fleet-specific detail but knows robots only by index.
- `card`: a bilinear match between the selection state and each robot's capability-card embedding
  (the LM's mean hidden state over the card text), `scale * cos(Wq h, Wk c_i) + bias`. It scores
  any robot that has a card, including one added by a plugin after training.

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
    def __init__(self, in_dim: int, num_robots: int, hidden: int = 384, mid: int = 96,
                 dropout: float = 0.1, card_dim: int = 128):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, mid), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(mid, num_robots),
        )
        self.query = nn.Linear(in_dim, card_dim)
        self.key = nn.Linear(in_dim, card_dim)
        self.card_scale = nn.Parameter(torch.tensor(10.0))
        self.card_bias = nn.Parameter(torch.tensor(0.0))
        self.gate = nn.Parameter(torch.tensor(0.0))
        self.register_buffer("known", torch.ones(num_robots, dtype=torch.bool))

    @property
    def num_robots(self) -> int:
        return int(self.known.numel())

    def forward(self, selection_state: torch.Tensor, card_embeddings: torch.Tensor) -> dict[str, torch.Tensor]:
        """selection_state (B, H), card_embeddings (N, H) -> logits (B, N) and the two parts."""
        mlp_logits = self.mlp(selection_state)
        query = F.normalize(self.query(selection_state), dim=-1)
        keys = F.normalize(self.key(card_embeddings), dim=-1)
        card_logits = self.card_scale * query @ keys.T + self.card_bias
        gate = torch.sigmoid(self.gate)
        blended = gate * mlp_logits + (1 - gate) * card_logits
        logits = torch.where(self.known, blended, card_logits)
        return {"robot_logits": logits, "mlp_logits": mlp_logits, "card_logits": card_logits}
