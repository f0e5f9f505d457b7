"""Architectures beside smp's Unet: a TransUNet-style 2-D network and the plain (Ronneberger) U-Net baseline.

Both map normalized images [N, 3, H, W] to logits [N, classes, H, W] for any H and W divisible by 32, trace to
ONNX with dynamic height and width, and keep an ``encoder`` attribute where there is one to load weights into.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class TransformerBlock(nn.Module):
    """A pre-norm ViT block: multi-head self-attention then an MLP, each with a residual connection."""

    def __init__(self, dim: int, num_heads: int, mlp_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"transformer hidden_size {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.dropout = dropout
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, mlp_dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(mlp_dim, dim),
            nn.Dropout(dropout),
        )

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Take tokens [N, T, C]; return tokens [N, T, C], every one having attended to all T."""
        n, t, c = tokens.shape
        qkv = self.qkv(self.norm1(tokens)).reshape(n, t, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [N, heads, T, C / heads]
        attended = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        tokens = tokens + self.proj(attended.transpose(1, 2).reshape(n, t, c))
        return tokens + self.mlp(self.norm2(tokens))


class TransformerBottleneck(nn.Module):
    """Global self-attention over the tokens of a feature map, added back to the map.

    The map [N, C, h, w] becomes h·w tokens of ``hidden_size`` (1×1 projection) plus a learned positional
    embedding stored on a ``grid_size``² grid and resized bilinearly to h×w, so any input size works (at the
    grid size the resize is the identity). After the blocks, a 1×1 projection back to C channels is added to the
    input; it starts at zero, so the network starts as its U-Net and learns how much global context to mix in.
    """

    def __init__(
        self,
        channels: int,
        hidden_size: int = 256,
        num_layers: int = 4,
        num_heads: int = 8,
        mlp_dim: int = 1024,
        dropout: float = 0.1,
        grid_size: int = 16,
    ) -> None:
        super().__init__()
        self.proj_in = nn.Conv2d(channels, hidden_size, kernel_size=1)
        self.pos_embed = nn.Parameter(torch.zeros(1, hidden_size, grid_size, grid_size))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.blocks = nn.ModuleList(
            TransformerBlock(hidden_size, num_heads, mlp_dim, dropout) for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(hidden_size)
        self.proj_out = nn.Conv2d(hidden_size, channels, kernel_size=1)
        nn.init.zeros_(self.proj_out.weight)
        assert self.proj_out.bias is not None  # Conv2d's bias=True
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Take the deepest feature map [N, C, h, w]; return it with global context added, same shape."""
        n, _, h, w = features.shape
        # Always resized (no shape test in Python), so a traced/exported graph stays valid at every size.
        pos = F.interpolate(self.pos_embed, size=(h, w), mode="bilinear", align_corners=False)
        tokens = (self.proj_in(features) + pos).flatten(2).transpose(1, 2)  # [N, h·w, hidden]
        for block in self.blocks:
            tokens = block(tokens)
        tokens = self.norm(tokens).transpose(1, 2).reshape(n, -1, h, w)
        return features + self.proj_out(tokens)


class TransUNet(nn.Module):
    """TransUNet-2D: an smp U-Net (EfficientNet encoder, skip connections) with transformer blocks at stride 32.

    Takes the smp encoder name, the decoder channels and the transformer's hidden size, depth, heads, MLP size,
    dropout and positional grid (input size / 32 it was sized for; other sizes interpolate), plus further smp
    ``Unet`` keyword arguments.
    """

    def __init__(
        self,
        encoder_name: str = "efficientnet-b0",
        decoder_channels: Sequence[int] = (256, 128, 64, 32, 16),
        hidden_size: int = 256,
        num_layers: int = 4,
        num_heads: int = 8,
        mlp_dim: int = 1024,
        dropout: float = 0.1,
        grid_size: int = 16,
        classes: int = 1,
        **unet_kwargs: object,
    ) -> None:
        super().__init__()
        import segmentation_models_pytorch as smp

        self.unet = smp.Unet(
            encoder_name=encoder_name,
            encoder_weights=None,
            in_channels=3,
            classes=classes,
            decoder_channels=tuple(decoder_channels),
            **unet_kwargs,
        )
        self.transformer = TransformerBottleneck(
            self.unet.encoder.out_channels[-1],
            hidden_size,
            num_layers,
            num_heads,
            mlp_dim,
            dropout,
            grid_size,
        )

    @property
    def encoder(self) -> nn.Module:
        """The CNN encoder (pretrained weights load here)."""
        return self.unet.encoder

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Take normalized images [N, 3, H, W] (H, W divisible by 32); return logits [N, classes, H, W]."""
        features = self.unet.encoder(image)
        features = [*features[:-1], self.transformer(features[-1])]
        return self.unet.segmentation_head(self.unet.decoder(features))


def _double_conv(in_channels: int, out_channels: int, batch_norm: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for channels in (in_channels, out_channels):
        layers.append(nn.Conv2d(channels, out_channels, kernel_size=3, padding=1, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm2d(out_channels))
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class PlainUNet(nn.Module):
    """The original U-Net (Ronneberger et al., 2015): double 3×3 convolutions, 2×2 max-pool down, 2×2
    transposed-convolution up, skip connections by concatenation, a 1×1 output convolution.

    Takes the first level's width (64 in the paper; each level doubles it), the number of down-sampling steps
    (4 in the paper), whether to put BatchNorm after each convolution (not in the paper; usual since), and the
    number of output classes. Unlike the paper, convolutions are padded, so the output has the input's size
    (H and W must be divisible by 2**depth). No pretrained backbone.
    """

    def __init__(self, width: int = 64, depth: int = 4, batch_norm: bool = True, classes: int = 1) -> None:
        super().__init__()
        if width < 1 or depth < 1:
            raise ValueError(f"unet_plain needs width >= 1 and depth >= 1, got width={width}, depth={depth}")
        widths = [width * 2**level for level in range(depth + 1)]
        self.down = nn.ModuleList(
            _double_conv(3 if level == 0 else widths[level - 1], widths[level], batch_norm)
            for level in range(depth + 1)
        )
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(widths[level + 1], widths[level], kernel_size=2, stride=2)
            for level in reversed(range(depth))
        )
        self.merge = nn.ModuleList(
            _double_conv(2 * widths[level], widths[level], batch_norm) for level in reversed(range(depth))
        )
        self.head = nn.Conv2d(width, classes, kernel_size=1)
        for module in self.modules():
            if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Take normalized images [N, 3, H, W] (H, W divisible by 2**depth); return logits [N, classes, H, W]."""
        skips = []
        x = image
        for level, block in enumerate(self.down):
            x = block(x if level == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        skips.pop()
        for up, merge in zip(self.up, self.merge, strict=True):
            x = merge(torch.cat([skips.pop(), up(x)], dim=1))
        return self.head(x)


def count_parameters(module: nn.Module) -> int:
    """Return the number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def gflop(module: nn.Module, height: int = 512, width: int = 512) -> float:
    """Return the forward pass's GFLOP (multiply and add counted separately) for one 3×height×width image."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = module.training
    module.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            module(torch.zeros(1, 3, height, width))
    finally:
        module.train(was_training)
    return counter.get_total_flops() / 1e9


def forward_ms(
    module: nn.Module, height: int = 512, width: int = 512, repeats: int = 5, device: str = "cpu"
) -> float:
    """Return the median wall time (ms) of ``repeats`` eval-mode forward passes of one 3×height×width image on
    ``device`` after two warm-up passes (channels_last, fp32, no gradients); the module is left as it was."""
    import statistics
    import time

    was_training = module.training
    module.eval()
    image = torch.rand(1, 3, height, width, device=device).to(memory_format=torch.channels_last)
    times = []
    try:
        with torch.inference_mode():
            for i in range(repeats + 2):
                start = time.perf_counter()
                module(image)
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                if i >= 2:
                    times.append((time.perf_counter() - start) * 1000)
    finally:
        module.train(was_training)
    return statistics.median(times)


__all__ = [
    "PlainUNet",
    "TransUNet",
    "TransformerBlock",
    "TransformerBottleneck",
    "count_parameters",
    "forward_ms",
    "gflop",
]
