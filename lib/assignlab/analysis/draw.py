"""Drawing images with boxes (matplotlib), for notebooks and ``predict``."""
from __future__ import annotations

from typing import Sequence

import matplotlib.patches as patches
import numpy as np
import torch

from assignlab.data.transforms import IMAGENET_MEAN, IMAGENET_STD


def denormalize(image: torch.Tensor) -> np.ndarray:
    """Normalised [3, H, W] tensor -> [H, W, 3] float array in [0, 1] for imshow."""
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (image.detach().cpu() * std + mean).clamp(0, 1).permute(1, 2, 0).numpy()


def draw_boxes(
    ax,
    image,
    boxes_xyxy: torch.Tensor,
    labels: Sequence[int] | None = None,
    names: Sequence[str] | None = None,
    scores: Sequence[float] | None = None,
    color: str | Sequence[str] = "white",
    linewidth: float = 1.2,
) -> None:
    """Show ``image`` (PIL, [H, W, 3] array or normalised [3, H, W] tensor) on ``ax`` with
    absolute-pixel xyxy ``boxes_xyxy`` [n, 4]; optional labels/scores are written at each box."""
    if isinstance(image, torch.Tensor):
        image = denormalize(image)
    ax.imshow(image)
    ax.set_axis_off()
    colors = [color] * len(boxes_xyxy) if isinstance(color, str) else list(color)
    for i, (x0, y0, x1, y1) in enumerate(torch.as_tensor(boxes_xyxy).reshape(-1, 4).tolist()):
        ax.add_patch(patches.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=colors[i], linewidth=linewidth))
        text = []
        if labels is not None:
            text.append(names[labels[i]] if names is not None else str(int(labels[i])))
        if scores is not None:
            text.append(f"{float(scores[i]):.2f}")
        if text:
            ax.text(x0, y0, " ".join(text), fontsize=6, color="black", va="bottom", bbox=dict(facecolor=colors[i], alpha=0.7, pad=0.5, linewidth=0))


def figure_png(fig, dpi: int = 100) -> bytes:
    """``fig`` as PNG bytes (closed afterwards if pyplot manages it), for ``IPython.display.Image``:
    the picture then shows as an image in JupyterLab, in papermill's output and in executed copies
    alike, whatever matplotlib backend the kernel has."""
    import io

    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()
