"""Vision Transformers (Dosovitskiy et al., ICLR 2021) from timm, in the backbone contract.

A timm ``VisionTransformer`` is split as::

    stem  = patch embedding, class token, position embedding (+ timm's pos_drop / norm_pre)
    blocks = the transformer blocks, tokens (batch, 1 + patches, dim) -> same shape
    head  = final LayerNorm (``pre``), class-token pooling, linear classifier (``fc``)

so that every method that works on blocks (fine-tuning, the last k blocks, SpotTune's two
copies of a block) works on a ViT as on a ResNet. Architectures (:data:`VIT_ARCHS`):
ViT-Ti/S/B with 16-px patches at 224 px under timm's names, and ``vit_mini`` (4-px patches at
32 px, dim 96, depth 6, 3 heads; 0.67 M parameters without classifier) for the embedded
``mini-vit`` preset, which the suite pretrains itself (``pretrained.kind: suite``).

Stochastic depth (:func:`set_drop_path_`, the ``drop_path`` hyperparameter): timm's rule,
block ``i`` of ``L`` drops its attention and MLP branches with probability ``rate * i / (L - 1)``
(``torch.linspace(0, drop_path_rate, depth)`` in timm's ``VisionTransformer``), as the NOAH,
V-PETL Bench and SSF scripts build their ViT-B/16 (``drop_path_rate`` / ``--dpr``).

Weights come only from a local file (``pretrained.kind: state_dict``): a timm state dict
(``.pth`` / ``.bin`` / ``.safetensors``, e.g. saved from ``timm.create_model(...).state_dict()``
or timm's Hugging Face ``model.safetensors``), a torchvision ``vit_b_16`` state dict (converted,
:func:`torchvision_to_timm`), or the suite's own wrapped state dict. Nothing is downloaded.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from spottune.backbones.base import Backbone, Head

# timm VisionTransformer arguments per architecture (mlp_ratio 4, qkv bias, cls-token pooling)
VIT_ARCHS: dict[str, dict[str, int]] = {
    "vit_tiny_patch16_224": {"img_size": 224, "patch_size": 16, "embed_dim": 192, "depth": 12, "num_heads": 3},
    "vit_small_patch16_224": {"img_size": 224, "patch_size": 16, "embed_dim": 384, "depth": 12, "num_heads": 6},
    "vit_base_patch16_224": {"img_size": 224, "patch_size": 16, "embed_dim": 768, "depth": 12, "num_heads": 12},
    "vit_mini": {"img_size": 32, "patch_size": 8, "embed_dim": 96, "depth": 6, "num_heads": 3},
}


def is_vit(arch: str) -> bool:
    return arch in VIT_ARCHS


class TokenStem(nn.Module):
    """Patch embedding, then ``[cls; patches] + pos_embed`` (timm's original ViT order)."""

    def __init__(self, patch_embed: nn.Module, cls_token: nn.Parameter, pos_embed: nn.Parameter,
                 pos_drop: nn.Module, norm_pre: nn.Module) -> None:
        super().__init__()
        self.patch_embed = patch_embed
        self.cls_token = cls_token
        self.pos_embed = pos_embed
        self.pos_drop = pos_drop
        self.norm_pre = norm_pre

    @property
    def num_patches(self) -> int:
        return self.pos_embed.shape[1] - 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patches = self.patch_embed(x)
        tokens = torch.cat([self.cls_token.expand(patches.shape[0], -1, -1), patches], dim=1)
        return self.norm_pre(self.pos_drop(tokens + self.pos_embed))


class ClassToken(nn.Module):
    """Pooling of a ViT: the class token's features, (batch, N, D) -> (batch, D)."""

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens[:, 0]


def set_drop_path_(backbone: Backbone, rate: float) -> Backbone:
    """Stochastic depth of rate ``rate`` on the blocks of a ViT ``backbone`` as timm builds it
    (see the module docstring); ``rate`` 0 leaves it unchanged. Returns it."""
    from timm.layers import DropPath

    if not rate:
        return backbone
    if backbone.family != "vit":
        raise ValueError(f"drop_path={rate}: stochastic depth applies to ViT blocks; {backbone.arch} is a "
                         f"{backbone.family} (set drop_path=0)")
    rates = torch.linspace(0, float(rate), backbone.num_blocks).tolist()
    for block, p in zip(backbone.blocks, rates):
        block.drop_path1 = DropPath(p) if p > 0 else nn.Identity()
        block.drop_path2 = DropPath(p) if p > 0 else nn.Identity()
    return backbone


def timm_vit(arch: str, num_classes: int) -> nn.Module:
    """The randomly initialised timm ``VisionTransformer`` of ``arch``."""
    from timm.models.vision_transformer import VisionTransformer

    if arch not in VIT_ARCHS:
        raise ValueError(f"unknown ViT architecture {arch!r}; known: {', '.join(VIT_ARCHS)}")
    return VisionTransformer(num_classes=num_classes, global_pool="token", class_token=True, **VIT_ARCHS[arch])


def from_timm(vit: nn.Module, arch: str) -> Backbone:
    """A timm ViT (original layout: class token, position embedding over it, no register
    tokens, ``global_pool='token'``) as a :class:`Backbone`; shares its modules."""
    if (getattr(vit, "reg_token", None) is not None or getattr(vit, "no_embed_class", False)
            or getattr(vit, "global_pool", "token") != "token" or getattr(vit, "dynamic_img_size", False)):
        raise ValueError(f"{arch}: only timm ViTs with a class token, position embedding over it and "
                         "class-token pooling fit the suite's stem / blocks / head contract")
    stem = TokenStem(vit.patch_embed, vit.cls_token, vit.pos_embed, vit.pos_drop, vit.norm_pre)
    head = Head(vit.norm, vit.head, pool=ClassToken())  # timm's fc_norm / head_drop: identities here
    return Backbone(stem, list(vit.blocks), head, arch, VIT_ARCHS[arch]["img_size"], family="vit")


def vit(arch: str, num_classes: int, state_dict: dict[str, torch.Tensor] | None = None) -> Backbone:
    """The ViT ``arch`` with a ``num_classes`` classifier, randomly initialised or loaded from a
    timm / torchvision ``state_dict`` (whose classifier size then wins)."""
    if state_dict is not None:
        state_dict = torchvision_to_timm(state_dict) if "conv_proj.weight" in state_dict else state_dict
        num_classes = state_dict["head.weight"].shape[0] if "head.weight" in state_dict else num_classes
    model = timm_vit(arch, num_classes)
    if state_dict is not None:
        try:
            missing, unexpected = model.load_state_dict(state_dict, strict=False)
        except RuntimeError as err:  # a tensor of another shape
            raise ValueError(f"the state dict does not fit {arch}: {str(err).splitlines()[1].strip()}") from None
        if unexpected or set(missing) - {"head.weight", "head.bias"}:
            raise ValueError(f"the state dict does not fit {arch}: missing {sorted(missing)[:5]}, "
                             f"unexpected {sorted(unexpected)[:5]}")
    return from_timm(model, arch)


def torchvision_to_timm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A torchvision ``VisionTransformer`` state dict under timm's names (same tensors: both
    compute ``x + attn(LN(x))``, ``x + MLP(LN(x))`` with a fused qkv projection)."""
    renames = [("conv_proj.", "patch_embed.proj."), ("class_token", "cls_token"),
               ("encoder.pos_embedding", "pos_embed"), ("encoder.ln.", "norm."), ("heads.head.", "head."),
               ("encoder.layers.encoder_layer_", "blocks."), (".ln_1.", ".norm1."), (".ln_2.", ".norm2."),
               (".self_attention.in_proj_weight", ".attn.qkv.weight"),
               (".self_attention.in_proj_bias", ".attn.qkv.bias"), (".self_attention.out_proj.", ".attn.proj."),
               (".mlp.0.", ".mlp.fc1."), (".mlp.3.", ".mlp.fc2.")]
    out = {}
    for key, value in state.items():
        for old, new in renames:
            key = key.replace(old, new)
        out[key] = value
    return out


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a ``.safetensors`` file or a weights-only ``torch.save`` file."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not (isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values())):
        raise ValueError(f"{path}: not a state dict (a mapping of names to tensors)")
    return state


def load_vit(arch: str, state: dict[str, Any]) -> Backbone:
    """A ViT from any supported state dict: the suite's wrapped one (``stem.`` / ``blocks.`` /
    ``head.`` keys, as the suite's pretraining saves it) or a timm / torchvision one."""
    if "stem.pos_embed" in state:
        model = vit(arch, state["head.fc.weight"].shape[0])
        model.load_state_dict(state)
        return model
    return vit(arch, 1, state_dict=state)
