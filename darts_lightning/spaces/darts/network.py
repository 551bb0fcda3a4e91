"""The network a genotype describes, trained from scratch to evaluate it (DARTS, Liu et al., sec. 3.2).

Built from the same cell code as the supernet (:class:`~darts_lightning.spaces.cell.GenotypeCell`: fixed edges,
affine batch norm, drop-path on every edge that is not an identity), with

* the CIFAR variant: a 3×3 conv stem to ``stem_multiplier · C`` channels;
* the ImageNet variant: the DARTS mobile-setting stems, three stride-2 3×3 convs (224 → 28);

reduction cells at 1/3 and 2/3 of the depth, and an auxiliary classifier on the output of the cell at
2/3 depth, used in training only (Szegedy et al., 2015; weight 0.4 in DARTS).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from darts_lightning.spaces.cell import GenotypeCell
from darts_lightning.spaces.darts.genotype import Genotype
from darts_lightning.spaces.darts.supernet import cell_plan, check_image_size
from darts_lightning.spaces.edges import FixedEdge

__all__ = ["EvalNetwork", "AuxiliaryHead", "build_eval_network"]

Variant = Literal["cifar", "imagenet"]


class AuxiliaryHead(nn.Module):
    """The DARTS auxiliary classifier: ReLU, 5×5 average pool (stride 3) on 8×8 features, 1×1 conv to 128,
    2×2 conv to 768, linear. Feature maps of other sizes are average-pooled to the same 2×2."""

    def __init__(self, channels: int, num_classes: int, feature_size: int) -> None:
        super().__init__()
        pool = (
            nn.AvgPool2d(5, stride=3, padding=0, count_include_pad=False)
            if feature_size == 8
            else nn.AdaptiveAvgPool2d(2)
        )
        self.features = nn.Sequential(
            nn.ReLU(inplace=False),
            pool,
            nn.Conv2d(channels, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False),
            nn.BatchNorm2d(768),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


class EvalNetwork(nn.Module):
    """A network of :class:`GenotypeCell` s. ``forward`` returns logits; :meth:`forward_with_auxiliary`
    also returns the auxiliary head's logits while training."""

    def __init__(
        self,
        genotype: Genotype,
        *,
        channels: int = 36,
        layers: int = 20,
        num_classes: int = 10,
        in_channels: int = 3,
        variant: Variant = "cifar",
        auxiliary: bool = True,
        stem_multiplier: int = 3,
        image_size: int | None = None,
    ) -> None:
        super().__init__()
        if variant not in ("cifar", "imagenet"):
            raise ValueError(f"variant must be 'cifar' or 'imagenet', got {variant!r}")
        self.genotype = genotype.validate(allow_import_paths=True)
        self.variant = variant
        if variant == "cifar":
            image_size = 32 if image_size is None else image_size
            check_image_size(image_size, layers, variant="cifar")
            stem_channels = stem_multiplier * channels
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, stem_channels, 3, padding=1, bias=False), nn.BatchNorm2d(stem_channels)
            )
            cell_input_size = image_size
        else:
            image_size = 224 if image_size is None else image_size
            check_image_size(image_size, layers, stem_halvings=3, variant="imagenet")  # the stems: 224 -> 28
            stem_channels = channels
            self.stem = nn.Sequential(  # stem0 and stem1 of the DARTS ImageNet network
                nn.Conv2d(in_channels, channels // 2, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(channels // 2),
                nn.ReLU(inplace=True),
                nn.Conv2d(channels // 2, channels, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(channels),
                nn.ReLU(inplace=False),
                nn.Conv2d(channels, channels, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(channels),
            )
            cell_input_size = image_size // 8
        self.stem_split = 5 if variant == "imagenet" else None  # s0 = stem0 output, s1 = stem1 output
        self.auxiliary_index = 2 * layers // 3
        plan = list(
            cell_plan(
                channels, layers, stem_channels,
                multiplier=len(genotype.normal_concat), reduce_multiplier=len(genotype.reduce_concat),
                stem_reduces=variant == "imagenet",
            )
        )
        self.cells = nn.ModuleList(
            GenotypeCell(
                c_pp, c_p, c,
                edges=genotype.reduce if reduction else genotype.normal,
                concat=genotype.reduce_concat if reduction else genotype.normal_concat,
                reduction=reduction, reduction_prev=reduction_prev,
            )
            for c_pp, c_p, c, reduction, reduction_prev in plan
        )
        out_channels = [
            (len(genotype.reduce_concat) if reduction else len(genotype.normal_concat)) * c
            for _, _, c, reduction, _ in plan
        ]
        size = cell_input_size
        self.auxiliary_head = None
        for i, (_, _, _, reduction, _) in enumerate(plan):
            size = size // 2 if reduction else size
            if auxiliary and i == self.auxiliary_index:
                self.auxiliary_head = AuxiliaryHead(out_channels[i], num_classes, feature_size=size)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(out_channels[-1], num_classes)
        self.drop_path_prob = 0.0

    def set_drop_path_prob(self, prob: float) -> None:
        """Drop-path probability of every non-identity edge (DARTS increases it linearly over training)."""
        self.drop_path_prob = prob
        for module in self.modules():
            if isinstance(module, FixedEdge):
                module.drop_prob = prob

    def _stems(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.stem_split is None:
            s = self.stem(x)
            return s, s
        s0 = self.stem[: self.stem_split](x)
        return s0, self.stem[self.stem_split :](s0)

    def forward_with_auxiliary(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """``(logits, auxiliary logits)``; the auxiliary logits are ``None`` outside training or without a head."""
        s0, s1 = self._stems(x)
        logits_aux = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell((s0, s1))
            if i == self.auxiliary_index and self.auxiliary_head is not None and self.training:
                logits_aux = self.auxiliary_head(s1)
        return self.classifier(torch.flatten(self.global_pooling(s1), 1)), logits_aux

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_with_auxiliary(x)[0]


def build_eval_network(
    genotype: Genotype | str,
    *,
    channels: int,
    layers: int,
    num_classes: int,
    variant: Variant = "cifar",
    auxiliary: bool = True,
    in_channels: int = 3,
    image_size: int | None = None,
) -> EvalNetwork:
    """Build the network a genotype describes in one call.

    ``genotype`` is a :class:`Genotype`, a published name (``Genotype.published_names()``), a path to a
    ``genotype.json`` or a DARTS repr string (see :meth:`Genotype.resolve`).
    """
    return EvalNetwork(
        Genotype.resolve(genotype), channels=channels, layers=layers, num_classes=num_classes,
        in_channels=in_channels, variant=variant, auxiliary=auxiliary, image_size=image_size,
    )
