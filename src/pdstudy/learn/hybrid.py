"""The CNN + Transformer hybrid of Table 2 ("Hybrid Model"): one documented reading of an unspecified model.

A timm CNN's last feature map becomes tokens (1x1 projection, learned position embeddings), a few timm
Transformer blocks mix them, and the mean token (global) is fused with the pooled CNN map (local) before
the classifier. The paper names only "EfficientNet-B7 with Transformer modules for global-local feature
fusion"; depth, width, heads and fusion here are choices (docs/training.md, "The CNN + Transformer hybrid").
The model is built by :func:`pdstudy.learn.models.build_model`.
"""

from __future__ import annotations

from typing import Final

import torch
from timm.layers import resample_abs_pos_embed, trunc_normal_
from timm.models import named_apply
from timm.models.vision_transformer import Block, init_weights_vit_timm
from torch import nn

__all__ = ["FUSIONS", "HYBRID_DEFAULTS", "CnnTransformer"]

#: How the global (Transformer) and local (pooled CNN) features are fused.
#: ``concat``: concatenated; ``add``: the local feature, projected to the Transformer width, added.
FUSIONS: Final = ("concat", "add")

#: Defaults of the hybrid's Transformer part (the paper's row; choices, not the paper's numbers).
HYBRID_DEFAULTS: Final = {"depth": 4, "embed_dim": 384, "num_heads": 6, "mlp_ratio": 4.0, "fusion": "concat"}


class CnnTransformer(nn.Module):
    """CNN feature map -> tokens -> Transformer blocks -> global + local features -> classifier.

    Parameters
    ----------
    cnn : torch.nn.Module
        A timm CNN without classifier (``reset_classifier(0)``); its ``forward_features`` gives the
        ``(B, C, h, w)`` map of its last block, with ``C = cnn.num_features``.
    grid : int
        Side of the feature map at the architecture's input size; the position embeddings are made for
        it and resampled (bicubic) for other sizes.
    num_classes : int
        Output logits.
    depth, embed_dim, num_heads : int
        Transformer blocks, token width and attention heads (``embed_dim`` divisible by ``num_heads``).
    mlp_ratio : float
        Hidden width of each block's MLP relative to ``embed_dim``.
    fusion : {"concat", "add"}
        How the global and local features meet (:data:`FUSIONS`).
    drop_rate : float
        Dropout on the fused feature before the classifier.
    drop_path_rate : float
        Stochastic depth of the Transformer blocks, rising linearly to this rate over depth (timm's ViT
        rule); the CNN's own stochastic depth is set when it is built.

    Notes
    -----
    The Transformer part is initialised as timm's ViT (``init_weights_vit_timm``: truncated normal,
    std 0.02, for linear layers and the position embeddings; zero biases); the CNN keeps its weights.
    """

    def __init__(self, cnn: nn.Module, *, grid: int, num_classes: int = 2, depth: int = 4, embed_dim: int = 384,
                 num_heads: int = 6, mlp_ratio: float = 4.0, fusion: str = "concat", drop_rate: float = 0.0,
                 drop_path_rate: float = 0.0) -> None:
        super().__init__()
        checks = [
            (depth >= 1, f"depth (Transformer blocks) must be >= 1, got {depth}"),
            (embed_dim >= 1 and num_heads >= 1 and embed_dim % num_heads == 0,
             f"embed_dim must be a positive multiple of num_heads, got embed_dim={embed_dim}, num_heads={num_heads}"),
            (mlp_ratio > 0, f"mlp_ratio must be > 0, got {mlp_ratio}"),
            (fusion in FUSIONS, f"fusion must be one of {list(FUSIONS)}, got {fusion!r}"),
            (grid >= 1, f"grid must be >= 1, got {grid}"),
            (0.0 <= drop_rate < 1.0, f"drop_rate must be in [0, 1), got {drop_rate}"),
            (0.0 <= drop_path_rate < 1.0, f"drop_path_rate must be in [0, 1), got {drop_path_rate}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        channels = int(cnn.num_features)
        self.cnn = cnn
        self.grid = grid
        self.fusion = fusion
        self.drop_rate = float(drop_rate)
        self.num_classes = num_classes
        self.proj = nn.Conv2d(channels, embed_dim, kernel_size=1)
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid, embed_dim))
        rates = [float(r) for r in torch.linspace(0, drop_path_rate, depth)]
        self.blocks = nn.Sequential(*[
            Block(embed_dim, num_heads, mlp_ratio=mlp_ratio, qkv_bias=True, drop_path=rate) for rate in rates
        ])
        self.norm = nn.LayerNorm(embed_dim)
        self.local_proj = nn.Linear(channels, embed_dim) if fusion == "add" else None
        self.num_features = embed_dim + channels if fusion == "concat" else embed_dim
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(self.num_features, num_classes)
        # timm's ViT initialisation for everything but the CNN
        trunc_normal_(self.pos_embed, std=0.02)
        for name in ("blocks", "norm", "local_proj", "head"):
            module = getattr(self, name)
            if module is not None:
                named_apply(init_weights_vit_timm, module)
        # the CNN's input statistics: the model takes what its CNN takes
        self.pretrained_cfg = dict(getattr(cnn, "pretrained_cfg", {}) or {})

    def _positions(self, h: int, w: int) -> torch.Tensor:
        if (h, w) == (self.grid, self.grid):
            return self.pos_embed
        return resample_abs_pos_embed(self.pos_embed, [h, w], [self.grid, self.grid], num_prefix_tokens=0)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Fused feature ``(B, num_features)`` before dropout and classifier."""
        fmap = self.cnn.forward_features(x)
        h, w = fmap.shape[-2:]
        tokens = self.proj(fmap).flatten(2).transpose(1, 2) + self._positions(h, w)
        tokens = self.norm(self.blocks(tokens))
        global_feature = tokens.mean(dim=1)
        local_feature = fmap.mean(dim=(2, 3))
        if self.fusion == "concat":
            return torch.cat([global_feature, local_feature], dim=1)
        return global_feature + self.local_proj(local_feature)

    def get_classifier(self) -> nn.Module:
        """The final linear layer (timm's name for it)."""
        return self.head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.head_drop(self.forward_features(x)))
