"""Building blocks of the coarse-to-fine heat-map localizer (CCVPE-style), all traceable to ONNX.

Every block has static shapes; the orientation search at each level is one batched matrix product with a
constant gather index (no Python loop over orientations, no ``torch.roll`` on data).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def double_conv(in_ch: int, out_ch: int) -> nn.Sequential:
    """3x3 conv - ReLU - 3x3 conv - ReLU (the U-Net block CCVPE uses in both decoders)."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(out_ch, out_ch, 3, padding=1), nn.ReLU(inplace=True),
    )


class UpBlock(nn.Module):
    """x2 transposed convolution, concatenation with a skip feature (if any), then a double conv."""

    def __init__(self, in_ch: int, skip_ch: int, out_ch: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_ch, in_ch, kernel_size=2, stride=2)
        self.conv = double_conv(in_ch + skip_ch, out_ch)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        x = self.up(x)
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.conv(x)


class QueryDescriptorHead(nn.Module):
    """One level's global query descriptor from the last query feature map.

    ``pool="height"`` (panoramas, pinhole cameras, as in CCVPE): a 1x1 conv to ``c`` channels, then a learned
    weighted sum over the ``h`` rows; the descriptor is column-major (``w * c`` values), so shifting the query
    by one feature column equals rolling the descriptor by ``c``. ``pool="none"`` (nadir drone views): every
    cell is kept, column-major (``w * h * c`` values).
    """

    def __init__(self, in_ch: int, c: int, h: int, w: int, pool: str) -> None:
        super().__init__()
        if pool not in ("height", "none"):
            raise ValueError(f"query pool must be 'height' or 'none', got {pool!r}")
        self.proj = nn.Conv2d(in_ch, c, 1)
        self.pool = pool
        self.row_weights = nn.Parameter(torch.full((h,), 1.0 / h)) if pool == "height" else None
        self.length = w * c if pool == "height" else w * h * c

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        x = self.proj(feat)  # (B, c, h, w)
        if self.row_weights is None:
            return x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)  # column-major (w, h, c)
        pooled = torch.matmul(x.transpose(2, 3), self.row_weights)  # (B, c, w): weighted sum over rows
        return pooled.transpose(1, 2).reshape(x.shape[0], -1)  # column-major (w, c)


def roll_index(num_orientations: int, aerial_ch: int, step: int) -> torch.Tensor:
    """(O, A) index: entry ``[i, p] = (p - i*step) mod A`` (query channel placed at aerial channel p)."""
    p = torch.arange(aerial_ch)
    i = torch.arange(num_orientations)[:, None]
    return torch.remainder(p[None, :] - i * step, aerial_ch)


class OrientationMatcher(nn.Module):
    """Cosine similarity of a query descriptor with every aerial cell at every orientation shift.

    For shift ``i`` the aerial descriptor is rolled by ``-i*step`` channels and cut to the query length ``L``
    (CCVPE). Equivalently the zero-padded query is rolled by ``+i*step``:
    ``s_i(m, n) = <roll(q, i*step), a(m, n)> / (|q| * |a(m, n) restricted to the window of shift i|)``.
    Computed for all shifts at once as two matrix products; output ``(B, O, n, n)``.
    """

    def __init__(self, query_len: int, aerial_ch: int, num_orientations: int) -> None:
        super().__init__()
        if aerial_ch % num_orientations or query_len > aerial_ch:
            raise ValueError(f"aerial channels {aerial_ch} must be a multiple of {num_orientations} orientations "
                             f"and at least the query length {query_len}")
        index = roll_index(num_orientations, aerial_ch, aerial_ch // num_orientations)
        self.register_buffer("index", index, persistent=False)
        self.register_buffer("window", (index < query_len).float(), persistent=False)  # (O, A)
        self.query_len = query_len
        self.aerial_ch = aerial_ch

    def forward(self, q: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        b, ch, n, m = a.shape
        q_pad = F.pad(q, (0, self.aerial_ch - self.query_len))  # (B, A)
        q_rolled = q_pad[:, self.index]  # (B, O, A)
        flat = a.reshape(b, ch, n * m)  # (B, A, N)
        dot = torch.matmul(q_rolled, flat)  # (B, O, N)
        a_norm = torch.sqrt(torch.matmul(self.window, flat * flat) + 1e-8)  # (B, O, N)
        q_norm = torch.linalg.vector_norm(q, dim=1).reshape(b, 1, 1) + 1e-8
        return (dot / (a_norm * q_norm)).reshape(b, -1, n, m)


class AerialDescriptor(nn.Module):
    """The coarsest aerial descriptor map: ``factor x factor`` chunks of a feature map, mixed by a 1x1 conv.

    Same as CCVPE's chunk-and-Linear (16x16 features -> 8x8 cells of 2x2), written as ``pixel_unshuffle``.
    """

    def __init__(self, in_ch: int, out_ch: int, factor: int) -> None:
        super().__init__()
        self.factor = factor
        self.mix = nn.Conv2d(in_ch * factor * factor, out_ch, 1)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        if self.factor > 1:
            feat = F.pixel_unshuffle(feat, self.factor)
        return self.mix(feat)


def circular_pad_width(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Wrap ``pad`` columns from each side of an equirectangular image around to the other side."""
    return torch.cat([x[..., -pad:], x, x[..., :pad]], dim=-1)


def spatial_softmax(logits: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) logits -> (B, H, W) probabilities over all pixels."""
    b, _, h, w = logits.shape
    return torch.softmax(logits.reshape(b, h * w), dim=1).reshape(b, h, w)


def heatmap_argmax_rowcol(heatmap: torch.Tensor) -> torch.Tensor:
    """(B, H, W) -> (B, 2) float (row, col) of each map's mode at the pixel centre (``index + 0.5``)."""
    b, _, w = heatmap.shape
    flat = heatmap.reshape(b, -1).argmax(dim=1)
    rows = torch.div(flat, w, rounding_mode="floor")
    return torch.stack([rows, flat - rows * w], dim=1).to(torch.float32) + 0.5


def orientation_at(orientation: torch.Tensor, rowcol: torch.Tensor) -> torch.Tensor:
    """Heading (rad, clockwise from north, in (-pi, pi]) read from a (B, 2, H, W) (cos, sin) field at (B, 2)."""
    b = orientation.shape[0]
    rows = rowcol[:, 0].floor().long().clamp(0, orientation.shape[2] - 1)
    cols = rowcol[:, 1].floor().long().clamp(0, orientation.shape[3] - 1)
    vec = orientation[torch.arange(b), :, rows, cols]  # (B, 2)
    return torch.atan2(vec[:, 1], vec[:, 0])
