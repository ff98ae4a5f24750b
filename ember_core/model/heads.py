"""Robot selection head: the reference implementation's per-robot MLP blended with a capability-card scorer.

Two scorers read the hidden state at `<|robot_selection|>` (and, in presets with a sentence
encoder, the task's sentence embedding):
- `mlp`: the reference implementation's head, in -> 384 (ReLU, dropout) -> 96 (ReLU, dropout) -> N, one logit per robot
  the checkpoint was trained with. It learns fleet-specific detail, and the habits of its training
  data, but knows robots only by index.
- `card`: a match between the request and each robot's capability card, `scale * sim_i + bias`.
  With a sentence encoder, every card phrase (capability, environment, role, description and the
  card's example requests) is embedded on its own, and sim_i is the mean of the `card_top_k` best
  cosines between the task and robot i's phrases, in the encoder's pretrained space with no learned
  map (learned maps fitted to 196 training tasks pulled novel phrasings and new robots towards the
  trained robots; measured in the README). Without a sentence encoder, sim_i is the cosine between
  learned maps of the selection state and of the LM's mean hidden state over the card text. It
  scores any robot that has a card, including one added after training. With a sentence encoder the
  card score also reads the card classifier (`ember_core.card_classifier`, a linear classifier of the
  fleet's robots fitted on their phrases, each robot's phrases weighing the same): card_i =
  `scale * sim_i + classifier_gain * log_odds_i + bias`, where log_odds_i is the logit of robot i's
  softmax probability under the classifier. The top-k cosine favours robots with many phrases; the
  classifier does not.

For robot i the logit is `g * mlp_i + (1 - g) * card_i` when the MLP has a trained row for it
(`known[i]`). A robot without one (added to the fleet after training) is scored from its card alone. With a
sentence encoder and a task memory, its logit is `new_robot_scale * z_i + new_robot_bias`, where z_i is the
card classifier's log-odds for it standardised by their mean and spread over the training tasks. This puts
a new robot's score on the trained robots' scale: the raw card score is not, and a robot with few phrases
rarely led. The two numbers were chosen on the development sets (README, "The model"). A head with a
new-robot encoder (`ember_core.model.new_robot_encoder`, sentence-encoder layers tuned to tell robots apart by
their cards) reads z_i in that encoder's space: the task's and the card phrases' embeddings by it, standardised
over the training tasks embedded by it (`new_robot_memory`), with a classifier fitted on the cards and the
default robots' labelled job steps (`ember_core.new_robot_steps`); in a fleet with a new robot every robot's
card score reads its log-odds from that classifier too. Without a sentence
encoder a new robot's logit is card_i. With a sentence encoder, g says how familiar the task is: the
head keeps the embeddings of its training tasks (`task_memory`) and
g = sigmoid(sharpness * (max cosine to a training task - threshold)), so tasks phrased like the
training data are scored by the MLP that learned them and tasks unlike anything it saw by the cards.
An empty memory (an untrained model) gives the cards alone.

At inference the memory also votes (`MemoryVote`, after kNN-LM, Khandelwal et al. 2020): the memory keeps
each training task's robots, and the robots of the tasks nearest to the request, weighed by a softmax of
their cosines, give each trained robot a share v_i; `gain * w * logit(v_i)` (v_i clipped to
[VOTE_FLOOR, 1 - VOTE_FLOOR]) joins its logit, where w = sigmoid(sharpness * (nearest cosine - vote
threshold)) so that only requests close to a training task are swayed. The MLP generalises from its
training tasks; the vote remembers them. Training leaves it out (every training task would find
itself), so it changes no weight; the settings were chosen on out-of-fold public tasks and the
development sets (README, "The model"). Without a sentence encoder g =
sigmoid(gate) is learned. Loading a 5-robot checkpoint into a 6-robot fleet copies the 5 trained MLP
rows to their new positions by robot id and marks the new robot unknown (see loading.py).
Training adds a loss on the card logits alone so that they are a calibrated scorer in their own right.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

# The vote's shares are clipped to [VOTE_FLOOR, 1 - VOTE_FLOOR]: a unanimous vote adds gain * logit(0.9), not infinity.
VOTE_FLOOR = 0.1


@dataclass(frozen=True)
class MemoryVote:
    """How the training tasks nearest to a request vote (module docstring); gain 0 turns the vote off."""

    neighbours: int = 20
    temperature: float = 0.05
    gain: float = 1.0
    threshold: float = 0.8


class RobotHead(nn.Module):
    def __init__(self, state_dim: int, num_robots: int, hidden: int = 384, mid: int = 96,
                 dropout: float = 0.1, card_dim: int = 128, text_dim: int = 0, card_top_k: int = 3,
                 memory_threshold: float = 0.6, memory_sharpness: float = 10.0,
                 memory_vote: MemoryVote = MemoryVote(), new_robot: tuple[float, float] = (0.7, -1.7),
                 new_robot_encoder: bool = False):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(state_dim + text_dim, hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, mid), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(mid, num_robots),
        )
        self.text_dim = text_dim
        self.card_top_k = card_top_k
        self.memory_threshold = memory_threshold
        self.memory_sharpness = memory_sharpness
        self.memory_vote = memory_vote
        self.new_robot_scale, self.new_robot_bias = new_robot
        if text_dim:
            self.register_buffer("task_memory", torch.zeros(0, text_dim))
            # Which robots (MLP rows) suit each remembered task, 0/1; empty: no vote (saved before there was one).
            self.register_buffer("memory_robots", torch.zeros(0, num_robots))
            if new_robot_encoder:  # the same tasks embedded by the new-robot encoder, for new robots' scores
                self.register_buffer("new_robot_memory", torch.zeros(0, text_dim))
        else:
            self.query = nn.Linear(state_dim, card_dim)
            self.key = nn.Linear(state_dim, card_dim)
            self.gate = nn.Parameter(torch.tensor(0.0))
        # A sentence-encoder cosine of 0.5 to a robot's best phrases is an even chance (logit 0); a
        # few hundred training steps barely move these, so they start where zero-shot is calibrated.
        self.card_scale = nn.Parameter(torch.tensor(10.0))
        self.card_bias = nn.Parameter(torch.tensor(-5.0 if text_dim else 0.0))
        if text_dim:  # half the classifier's log-odds beside the cosine: the start chosen on the development sets
            self.card_classifier_gain = nn.Parameter(torch.tensor(0.5))
        self.register_buffer("known", torch.ones(num_robots, dtype=torch.bool))

    @property
    def num_robots(self) -> int:
        return int(self.known.numel())

    def set_task_memory(self, embeddings: torch.Tensor, robots: torch.Tensor | None = None,
                        new_robot_embeddings: torch.Tensor | None = None) -> None:
        """Remember the sentence embeddings (M, T) of the training tasks, which decide the gate, and which
        robots (M, MLP rows) suit each, 0/1, which vote at inference (None or empty: no vote); a head with a
        new-robot encoder also needs the tasks' embeddings by it (M, T)."""
        if not self.text_dim:
            raise ValueError("only a head with a sentence encoder keeps a task memory")
        if hasattr(self, "new_robot_memory"):
            if new_robot_embeddings is None or new_robot_embeddings.shape != embeddings.shape:
                raise ValueError(f"a head with a new-robot encoder remembers the {embeddings.shape[0]} tasks embedded "
                                 f"by it too; got {None if new_robot_embeddings is None else list(new_robot_embeddings.shape)}")
            self.new_robot_memory = F.normalize(new_robot_embeddings.detach().float(), dim=-1).to(self.known.device)
        if robots is None or robots.numel() == 0:
            robots = torch.zeros(0, self.num_robots)
        elif tuple(robots.shape) != (embeddings.shape[0], self.num_robots):
            raise ValueError(f"memory robots of shape {list(robots.shape)} for {embeddings.shape[0]} tasks and "
                             f"{self.num_robots} robots; expected [{embeddings.shape[0]}, {self.num_robots}]")
        self.task_memory = F.normalize(embeddings.detach().float(), dim=-1).to(self.known.device)
        self.memory_robots = robots.detach().float().to(self.known.device)

    def familiarity(self, task_embedding: torch.Tensor) -> torch.Tensor:
        """(B,) weight of the MLP for unit task embeddings (B, T): near 1 for tasks like a training
        task, near 0 for novel ones."""
        if self.task_memory.numel() == 0:
            return task_embedding.new_zeros(task_embedding.shape[0])
        nearest = (task_embedding @ self.task_memory.to(task_embedding.dtype).T).max(1).values
        return torch.sigmoid(self.memory_sharpness * (nearest - self.memory_threshold))

    def vote(self, task_embedding: torch.Tensor | None) -> torch.Tensor | None:
        """(B, MLP rows): the memory's vote for task embeddings (B, T), to add to the trained robots' logits
        (module docstring); None without a sentence encoder, in training, without remembered robots, or with gain 0."""
        vote = self.memory_vote
        if not self.text_dim or self.training or self.memory_robots.numel() == 0 or vote.gain == 0:
            return None
        memory = self.task_memory.to(task_embedding.dtype)
        task = F.normalize(task_embedding, dim=-1)
        nearest, index = (task @ memory.T).topk(min(vote.neighbours, memory.shape[0]), dim=-1)
        weights = torch.softmax(nearest / vote.temperature, dim=-1)
        shares = (weights.unsqueeze(-1) * self.memory_robots.to(task_embedding.dtype)[index]).sum(1)
        shares = shares.clamp(VOTE_FLOOR, 1 - VOTE_FLOOR)
        swayed = torch.sigmoid(self.memory_sharpness * (nearest[:, :1] - vote.threshold))
        return vote.gain * swayed * torch.log(shares / (1 - shares))

    def new_robot_logits(self, task_embedding: torch.Tensor | None,
                         card_classifier: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor | None:
        """(B, N): each robot's logit as a robot without a trained MLP row (module docstring), for the task
        embeddings and the card classifier of the new-robot encoder where the head has one (else the sentence
        encoder's); None without a sentence encoder or a task memory, where such a robot keeps its card score."""
        if not self.text_dim or self.task_memory.numel() == 0:
            return None
        memory = getattr(self, "new_robot_memory", self.task_memory)
        weight, bias = (part.to(task_embedding.dtype) for part in card_classifier)
        odds = _log_odds(F.normalize(task_embedding, dim=-1) @ weight.T + bias)
        background = _log_odds(memory.to(task_embedding.dtype) @ weight.T + bias)  # (M, N)
        centre = background.mean(0)
        spread = ((background - centre) ** 2).mean(0).sqrt().clamp(min=1e-6)
        return self.new_robot_scale * (odds - centre) / spread + self.new_robot_bias

    @contextmanager
    def vote_paused(self) -> Iterator[None]:
        """Score without the memory's vote inside the block (what training learned, e.g. to pick the best epoch)."""
        kept = self.memory_vote
        self.memory_vote = replace(kept, gain=0.0)
        try:
            yield
        finally:
            self.memory_vote = kept

    def forward(self, selection_state: torch.Tensor, card_embeddings: torch.Tensor,
                task_embedding: torch.Tensor | None = None, card_owner: torch.Tensor | None = None,
                card_classifier: tuple[torch.Tensor, torch.Tensor] | None = None,
                new_robot: tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]] | None = None,
                ) -> dict[str, torch.Tensor]:
        """selection_state (B, H), card_embeddings (M, C), task_embedding (B, T) -> logits (B, N) and parts.

        `card_owner` (M,) gives the robot index of each card embedding (several phrases per robot);
        None means one embedding per robot, in fleet order. `card_classifier` is the weight (N, T) and
        bias (N,) that `ember_core.card_classifier` fitted on the card embeddings (with a sentence encoder).
        `new_robot` is the task embedding and card classifier of the new-robot encoder, for a head with one
        whose fleet has a robot without a trained row (`new_robot_logits`).
        """
        mlp_logits = self.mlp_logits(selection_state, task_embedding)
        card_logits, gate = self.card_logits(selection_state, card_embeddings, task_embedding, card_owner, self.num_robots,
                                             card_classifier, new_robot)
        result = self.blend(mlp_logits, card_logits, gate, self.known, self.vote(task_embedding),
                            self.new_robot_logits(*(new_robot or (task_embedding, card_classifier))))
        if self.text_dim:
            result["familiarity"] = gate[:, 0]  # (B,): how like a remembered training task (`familiarity`)
        return result

    def mlp_logits(self, selection_state: torch.Tensor, task_embedding: torch.Tensor | None) -> torch.Tensor:
        """(B, rows): the MLP's logit for each robot it has a row for."""
        if not self.text_dim:
            return self.mlp(selection_state)
        if task_embedding is None:
            raise ValueError("this head needs the task's sentence embedding (the preset has a text encoder)")
        return self.mlp(torch.cat([selection_state, task_embedding], dim=-1))

    def card_logits(self, selection_state: torch.Tensor, card_embeddings: torch.Tensor,
                    task_embedding: torch.Tensor | None, card_owner: torch.Tensor | None,
                    num_robots: int, card_classifier: tuple[torch.Tensor, torch.Tensor] | None = None,
                    new_robot: tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]] | None = None,
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The card scores (B, num_robots) and the gate g, the weight of the MLP (B, 1) or (); see `forward`. With
        `new_robot` (the new-robot encoder's task embedding and card classifier) the classifier's log-odds are read
        from it: in a fleet with a new robot every robot is told from it in the space tuned to tell robots apart."""
        if self.text_dim:
            if card_classifier is None:
                raise ValueError("this head needs the card classifier of its cards (ember_core.card_classifier)")
            task = F.normalize(task_embedding, dim=-1)  # the encoder's are unit vectors; any caller's become so
            similarity = task @ F.normalize(card_embeddings, dim=-1).T
            gate = self.familiarity(task).unsqueeze(1)
        else:
            similarity = F.normalize(self.query(selection_state), dim=-1) @ F.normalize(self.key(card_embeddings), dim=-1).T
            gate = torch.sigmoid(self.gate)
        if card_owner is not None:
            similarity = _top_k_mean(similarity, card_owner, num_robots, self.card_top_k)
        logits = self.card_scale * similarity + self.card_bias
        if self.text_dim:
            if new_robot is not None:
                task, card_classifier = F.normalize(new_robot[0], dim=-1), new_robot[1]
            weight, bias = card_classifier
            logits = logits + self.card_classifier_gain * _log_odds(task @ weight.to(task.dtype).T + bias.to(task.dtype))
        return logits, gate

    @staticmethod
    def blend(mlp_logits: torch.Tensor, card_logits: torch.Tensor, gate: torch.Tensor,
              known: torch.Tensor, vote: torch.Tensor | None = None,
              new_robot: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The logits: `g * mlp + (1 - g) * card` (plus the memory's `vote`) for robots the MLP knows; for the
        others `new_robot` (`new_robot_logits`), or the card score where that is None."""
        blended = gate * mlp_logits + (1 - gate) * card_logits
        if vote is not None:
            blended = blended + vote
        logits = torch.where(known, blended, card_logits if new_robot is None else new_robot)
        return {"robot_logits": logits, "mlp_logits": mlp_logits, "card_logits": card_logits}


def _top_k_mean(similarity: torch.Tensor, owner: torch.Tensor, num_robots: int, k: int) -> torch.Tensor:
    """(B, M) similarities to card phrases -> (B, num_robots): per robot the mean of the k largest of its
    phrases' (of all it has, when it has fewer). One batched top-k, so it also exports to ONNX."""
    member = owner.unsqueeze(0) == torch.arange(num_robots, device=owner.device).unsqueeze(1)  # (N, M)
    top = similarity.unsqueeze(1).masked_fill(~member, float("-inf")).topk(min(k, similarity.shape[1]), dim=-1).values
    counts = member.sum(1).clamp(max=top.shape[-1])  # (N,)
    taken = torch.arange(top.shape[-1], device=owner.device) < counts.unsqueeze(1)  # (N, k)
    return torch.where(taken, top, torch.zeros_like(top)).sum(-1) / counts


def _log_odds(scores: torch.Tensor) -> torch.Tensor:
    """(B, N) classifier scores -> the logit of each robot's softmax probability, z_i - logsumexp_{j != i} z_j
    (0 in a fleet of one robot, which the classifier cannot tell from anything)."""
    robots = torch.arange(scores.shape[-1], device=scores.device)
    eye = robots.unsqueeze(0) == robots.unsqueeze(1)
    others = torch.logsumexp(scores.unsqueeze(1).masked_fill(eye, float("-inf")), dim=-1)
    return torch.where(torch.isinf(others), torch.zeros_like(scores), scores - others)


RELEVANCE_SCALE = 20.0


class ExplanationAdapter(nn.Module):
    """What the explanation decoder's choices read: the LM's hidden state plus a residual MLP, and a
    learned weight on the relevance of a candidate card phrase to the task (`ember_core.relevance`).

    The robot head never reads it, so training it alone leaves every robot score as it was.
    Zero-initialised, it starts as the LM's own output layer with relevance ignored.
    """

    def __init__(self, width: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))
        nn.init.zeros_(self.mlp[2].weight)
        nn.init.zeros_(self.mlp[2].bias)
        self.relevance_gain = nn.Parameter(torch.zeros(()))

    @property
    def relevance_weight(self) -> torch.Tensor:
        """The weight on relevance: cosines differ by tenths, so the learned gain is scaled to move logits."""
        return RELEVANCE_SCALE * self.relevance_gain

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden + self.mlp(hidden)
