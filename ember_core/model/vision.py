"""Vision encoders: timm RepViT feature maps turned into visual tokens of the language model's width."""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Iterator

import timm
import torch
import torch.nn as nn

from ember_core.model.registry import register_part
from ember_core.model.weights import load_state_dict_file

log = logging.getLogger("ember.model")
REPVIT_VARIANTS = ("repvit_m0_9", "repvit_m1_0", "repvit_m1_1", "repvit_m1_5")


class VisionEncoder(nn.Module):
    """A timm backbone and a projector: (B, 3, S, S) images -> (B, (S/32)^2, out_dim) visual tokens.

    `frozen` stops gradients into the backbone and keeps its BatchNorm layers in eval mode, so a
    frozen encoder's running statistics never drift while the rest of the model trains.

    A training batch of one image is normalised with the running statistics, as at inference, and
    leaves them unchanged: one image has no batch statistics to speak of, and at a small image size
    (a 1x1 map in the last stage at 32 px) BatchNorm cannot compute them at all. Such a batch is an
    epoch's last when the data leaves one sample over, or every batch with a batch size of 1.
    """

    def __init__(self, variant: str, out_dim: int, image_size: int, weights: str | None = None, frozen: bool = False):
        super().__init__()
        self.variant = variant
        self.image_size = image_size
        self.backbone = _create_backbone(variant, weights)
        channels = self.backbone.num_features
        # nanoVLM-style modality projector: a small MLP from vision channels to the LM width.
        self.projector = nn.Sequential(nn.Linear(channels, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))
        self.frozen = False
        self.set_frozen(frozen)

    @property
    def num_tokens(self) -> int:
        """Visual tokens per image: one per cell of the stride-32 feature map."""
        side = -(-self.image_size // 32)
        return side * side

    def set_frozen(self, frozen: bool) -> None:
        self.frozen = frozen
        for parameter in self.backbone.parameters():
            parameter.requires_grad_(not frozen)
        if frozen:
            self.backbone.eval()

    def train(self, mode: bool = True) -> VisionEncoder:
        super().train(mode)
        if self.frozen:
            self.backbone.eval()
        return self

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        with _running_statistics(self.backbone, self.training and pixel_values.shape[0] == 1):
            features = self.backbone.forward_features(pixel_values)  # (B, C, H, W)
        tokens = features.flatten(2).transpose(1, 2)  # (B, H*W, C)
        return self.projector(tokens)


@contextlib.contextmanager
def _running_statistics(module: nn.Module, active: bool) -> Iterator[None]:
    """While `active`, the BatchNorm layers of `module` that are training normalise with their running
    statistics and do not update them; they train again after the block."""
    norms = [layer for layer in module.modules() if isinstance(layer, nn.modules.batchnorm._BatchNorm)
             and layer.training] if active else []
    for layer in norms:
        layer.train(False)
    try:
        yield
    finally:
        for layer in norms:
            layer.train(True)


def _create_backbone(variant: str, weights: str | None) -> nn.Module:
    """The timm model without classifier; weights from a local file/dir, a hub name, or none."""
    if weights is None:
        return timm.create_model(variant, pretrained=False, num_classes=0)
    path = Path(weights).expanduser()
    if path.exists():
        backbone = timm.create_model(variant, pretrained=False, num_classes=0)
        state = load_state_dict_file(path)
        result = backbone.load_state_dict(state, strict=False)
        # Classifier weights of an ImageNet checkpoint are expected leftovers; backbone keys are not.
        missing = [key for key in result.missing_keys if not key.startswith("head")]
        if missing:
            raise ValueError(f"{path}: not {variant} weights; missing {len(missing)} tensor(s), e.g. {missing[:3]}")
        log.info("Loaded %s weights from %s", variant, path)
        return backbone
    try:
        return timm.create_model(weights, pretrained=True, num_classes=0)
    except Exception as err:
        raise ValueError(
            f"vision weights {weights!r}: not a local file or directory, and loading it as a timm/hub name "
            f"failed ({err.__class__.__name__}: {err}). Pass a local path to the weights when offline."
        ) from err


def _register(variant: str) -> None:
    @register_part("vision", variant)
    def build(out_dim: int, image_size: int, weights: str | None = None, frozen: bool = False) -> VisionEncoder:
        return VisionEncoder(variant, out_dim, image_size, weights, frozen)


for _variant in REPVIT_VARIANTS:
    _register(_variant)
