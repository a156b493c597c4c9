"""The committed throughput table: images/s per method, backbone setting and precision.

``spottune/estimates/throughput.yaml`` feeds the cost estimate of ``run_all.py --dry-run``
(:mod:`spottune.estimates.cost`). Its ``kind`` says what the numbers are: ``measured`` (written by
``benchmarks/gpu_check.sh`` on a GPU) or ``estimate`` (CPU measurements multiplied by the
documented ``scale``; never mistaken for a measurement: every estimate printed from it says
so). Layout::

    kind: measured | estimate
    device: what the numbers stand for (a GPU's name)
    source: how they were obtained (command, machine, threads, load)
    scale: {factor: ..., anchor: ...}            # estimate only
    settings:
      resnet26@64:                               # <arch>@<image size>, width 1
        batch_size: 32
        methods:
          finetune: {fp32: {train: 1234.0, eval: 5678.0}, bf16: {...}}

A run whose backbone is not in the table at its size (or width) borrows the rate of the same
architecture (a torchvision ResNet or a ViT: of a measured one of its kind, scaled by
:data:`RESNET_GMACS` or :data:`VIT_GMACS`) scaled
by compute (image area, and width squared for ResNet-26), but never faster
than the measured setting: a smaller network does not keep a GPU busy, so the estimate stays
an upper bound on its time. A method that was not measured borrows standard fine-tuning's
rate, a precision that was not measured borrows fp32's; each borrowing is named in
:attr:`Rate.notes`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DEFAULT_TABLE = Path(__file__).parent / "throughput.yaml"
KINDS = ("measured", "estimate")
REFERENCE_METHOD = "finetune"
# multiply-accumulates per 224-px image, in billions (torch.utils.flop_counter, batch 1)
RESNET_GMACS = {"resnet18": 1.814, "resnet34": 3.664, "resnet50": 4.089, "resnet101": 7.801, "resnet152": 11.514}
# the same for the ViTs at 224 px (patch 16, 197 tokens; torch.utils.flop_counter, batch 1)
VIT_GMACS = {"vit_tiny_patch16_224": 1.075, "vit_small_patch16_224": 4.241, "vit_base_patch16_224": 16.849}


def setting_key(arch: str, image_size: int) -> str:
    return f"{arch}@{image_size}"


@dataclass
class Rate:
    """Training and evaluation images/s for one run, and what was borrowed to get them."""

    train: float
    eval: float
    notes: list[str] = field(default_factory=list)


@dataclass
class ThroughputTable:
    """The table of the module docstring."""

    kind: str
    device: str
    source: str
    settings: dict[str, dict[str, Any]]
    scale: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"throughput table kind must be one of {KINDS}, got {self.kind!r}")

    @classmethod
    def load(cls, path: str | Path = DEFAULT_TABLE) -> "ThroughputTable":
        with open(path) as f:
            doc = yaml.safe_load(f)
        return cls(kind=doc["kind"], device=doc["device"], source=doc["source"], settings=doc["settings"],
                   scale=doc.get("scale"))

    def save(self, path: str | Path, comment: str = "") -> None:
        doc: dict[str, Any] = {"kind": self.kind, "device": self.device, "source": self.source}
        if self.scale is not None:
            doc["scale"] = self.scale
        doc["settings"] = self.settings
        header = "".join(f"# {line}\n" for line in comment.splitlines())
        Path(path).write_text(header + yaml.safe_dump(doc, sort_keys=False, width=100))

    def describe(self) -> str:
        """One line saying what the numbers are (``source`` and ``scale`` hold the details)."""
        if self.kind == "measured":
            return f"measured on {self.device}"
        factor = self.scale["factor"] if self.scale else "?"
        return f"ESTIMATE, not a measurement: {self.device} images/s taken as CPU images/s x {factor}"

    def rate(self, method: str, arch: str, image_size: int, width: float = 1.0,
             precision: str = "fp32") -> Rate | None:
        """Images/s of ``method`` on ``arch`` (``width``) at ``image_size`` px, or ``None``
        when the architecture was never measured."""
        notes: list[str] = []
        key = setting_key(arch, image_size)
        arch_compute = 1.0
        same_arch = [k for k in self.settings if k.split("@")[0] == arch]
        gmacs = next((table for table in (RESNET_GMACS, VIT_GMACS) if arch in table), None)
        if not same_arch and gmacs is not None:
            same_arch = [k for k in self.settings if k.split("@")[0] in gmacs]
            if same_arch:
                arch_compute = gmacs[arch] / gmacs[same_arch[0].split("@")[0]]
        if not same_arch:
            return None
        if key not in self.settings:
            key = same_arch[0]
        reference_size = int(key.split("@")[1])
        compute = arch_compute * (image_size / reference_size) ** 2 * (width ** 2 if arch == "resnet26" else 1.0)
        factor = 1.0 / max(compute, 1.0)
        if compute != 1.0:
            notes.append(f"{arch} at {image_size} px, width {width:g}: the rate of {key}"
                         + (f" / {compute:.3g} (compute)" if compute > 1.0 else " (no faster: GPU under-used)"))
        methods = self.settings[key]["methods"]
        if method not in methods:
            notes.append(f"{method} not measured: {REFERENCE_METHOD}'s rate")
            method = REFERENCE_METHOD
        by_precision = methods[method]
        if precision not in by_precision:
            notes.append(f"{precision} not measured: fp32's rate")
            precision = "fp32"
        measured = by_precision[precision]
        return Rate(train=measured["train"] * factor, eval=measured["eval"] * factor, notes=notes)
