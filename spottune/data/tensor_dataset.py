"""In-memory uint8 image datasets with augmentation done on tensors (no PIL per image)."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset


class TensorImageDataset(Dataset):
    """Images ``(N, C, H, W)`` uint8 (C = 1 or 3) with int64 labels.

    Training augmentation (``augment=True``): zero-pad by ``pad`` pixels and take a random
    crop of the original size (drawn from the global torch generator, which the engine seeds
    per epoch; the images are padded once, at construction). Grey images are repeated to 3
    channels; then ``(x / 255 - mean) / std``.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, mean: Sequence[float],
                 std: Sequence[float], augment: bool = False, pad: int = 0) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = images
        self.labels = labels.long()
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
        self.augment = augment
        self.pad = pad
        self.padded = F.pad(images, (pad,) * 4) if augment and pad else None

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if self.padded is None:
            x = self.images[index].float().div_(255.0)
        else:
            h, w = self.images.shape[-2:]
            i, j = torch.randint(0, 2 * self.pad + 1, (2,)).tolist()
            x = self.padded[index, :, i:i + h, j:j + w].float().div_(255.0)
        if x.shape[0] == 1:
            x = x.expand(3, -1, -1)
        return (x - self.mean) / self.std, int(self.labels[index])


def channel_stats(images: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std (in [0, 1] units, 3 channels) of uint8 images."""
    x = images.float().div(255.0)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return [round(v, 4) for v in mean.tolist()], [round(v, 4) for v in std.tolist()]
