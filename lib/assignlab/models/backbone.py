"""Backbones returning the C3, C4, C5 feature maps (strides 8, 16, 32).

``ResNet50Backbone`` is the paper profile's: torchvision ResNet-50 with frozen batch norm, the stem
and ``layer1`` frozen as in Deformable-DETR and DETA, ImageNet weights only on request.
``SmallResNet`` is a four-stage ResNet of basic blocks for the CPU profiles, trained from scratch.
``dilated_c5=True`` gives DETR's DC5 variant of either: the last stage keeps stride 16 and
dilates its convolutions by 2 instead, so C5 has twice the resolution (strides 8, 16, 16).
"""
from __future__ import annotations

import torch
import torchvision
from torch import nn
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.ops import FrozenBatchNorm2d


class ResNet50Backbone(nn.Module):
    """torchvision ResNet-50 with ``FrozenBatchNorm2d``; returns [C3, C4, C5] as [B, C_l, H/s_l, W/s_l]."""

    strides = (8, 16, 32)
    num_channels = (512, 1024, 2048)

    def __init__(self, pretrained: bool = False, dilated_c5: bool = False) -> None:
        super().__init__()
        if dilated_c5:
            self.strides = (8, 16, 16)
        resnet = torchvision.models.resnet50(weights=None, norm_layer=FrozenBatchNorm2d,
                                             replace_stride_with_dilation=[False, False, dilated_c5])
        if pretrained:
            resnet.load_state_dict(_imagenet_resnet50_state_dict())
        # As released: only layer2..layer4 are trained (stem and layer1 stay at their ImageNet values).
        for name, parameter in resnet.named_parameters():
            if not name.startswith(("layer2", "layer3", "layer4")):
                parameter.requires_grad_(False)
        self.body = IntermediateLayerGetter(resnet, return_layers={"layer2": "0", "layer3": "1", "layer4": "2"})

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        return list(self.body(images).values())


def _imagenet_resnet50_state_dict() -> dict[str, torch.Tensor]:
    """ImageNet weights (torchvision IMAGENET1K_V1, the ones DETR-family models start from)."""
    weights = torchvision.models.ResNet50_Weights.IMAGENET1K_V1
    try:
        return weights.get_state_dict(progress=False)
    except Exception as error:  # no network and no cached file
        raise RuntimeError(
            "model.pretrained_backbone=True but torchvision could not load the ResNet-50 ImageNet "
            f"weights ({weights.url}): {error}. Place the file in the torch hub cache "
            f"({torch.hub.get_dir()}/checkpoints) or set model.pretrained_backbone=False."
        ) from error


def _norm(channels: int) -> nn.GroupNorm:
    # GroupNorm, not BatchNorm: the small backbone trains from scratch with a few images per
    # process, and its output must not depend on the batch (one process with batch 4 has to give
    # the same model as two processes with batch 2, and an image alone the same as in a batch).
    return nn.GroupNorm(min(8, channels), channels)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with group norm and a residual (1x1 projection when the shape changes)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, dilation: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, dilation, dilation=dilation, bias=False)
        self.bn1 = _norm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, dilation, dilation=dilation, bias=False)
        self.bn2 = _norm(out_channels)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), _norm(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + identity)


class SmallResNet(nn.Module):
    """A ResNet-18-shaped network with one basic block per stage and stem width ``width``.

    Returns [C3, C4, C5] with channels (2w, 4w, 8w) at strides (8, 16, 32), or (8, 16, 16) with
    ``dilated_c5`` (the last block keeps the resolution and dilates its convolutions by 2).
    """

    strides = (8, 16, 32)

    def __init__(self, width: int = 32, dilated_c5: bool = False) -> None:
        super().__init__()
        if width < 1:
            raise ValueError(f"model.backbone_width must be positive, got {width}")
        if dilated_c5:
            self.strides = (8, 16, 16)
        self.num_channels = (2 * width, 4 * width, 8 * width)
        self.stem = nn.Sequential(
            nn.Conv2d(3, width, 3, 2, 1, bias=False), _norm(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, 2, 1, bias=False), _norm(width), nn.ReLU(inplace=True),
        )  # stride 4
        self.layer1 = BasicBlock(width, width, 1)
        self.layer2 = BasicBlock(width, 2 * width, 2)
        self.layer3 = BasicBlock(2 * width, 4 * width, 2)
        self.layer4 = (BasicBlock(4 * width, 8 * width, 1, dilation=2) if dilated_c5
                       else BasicBlock(4 * width, 8 * width, 2))

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        c2 = self.layer1(self.stem(images))
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return [c3, c4, c5]


def build_backbone(name: str, pretrained: bool = False, width: int = 32, dilated_c5: bool = False) -> nn.Module:
    """``"resnet50"`` or ``"small_resnet"``; the module has ``strides``, ``num_channels`` and
    ``forward(images [B, 3, H, W]) -> [C3, C4, C5]`` (C5 at stride 16 with ``dilated_c5``)."""
    if name == "resnet50":
        return ResNet50Backbone(pretrained=pretrained, dilated_c5=dilated_c5)
    if name == "small_resnet":
        if pretrained:
            raise ValueError("model.pretrained_backbone=True: no pretrained weights exist for 'small_resnet'")
        return SmallResNet(width=width, dilated_c5=dilated_c5)
    raise ValueError(f"unknown model.backbone {name!r} (expected 'resnet50' or 'small_resnet')")
