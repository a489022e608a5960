"""``MatchExplorer``: the assignment of each method on any validation image, in JupyterLab.

Controls (ipywidgets): the image (slider), one or two methods side by side, the output (encoder
proposals, each decoder layer, the final detections), the score threshold of the confident
predictions shown, and the object whose candidate predictions are tabled. One row per method:
the picture (:func:`~assignlab.analysis.explorer.draw_view`), Align-DETR's Figure 1 (recall of the
objects' best-regressed predictions among the top m x N confident) and Figure 4 (confidence
against IoU of the assigned pairs) for the shown image and the last decoder layer, then the
candidate table of the selected object (:func:`~assignlab.analysis.explorer.candidates`).
Everything shown comes from :mod:`assignlab.analysis.explorer`; :meth:`MatchExplorer.figure`
draws a selection without widgets (for papermill and saved copies).
"""
from __future__ import annotations

from typing import Sequence

import pandas as pd

from assignlab.analysis.draw import figure_png
from assignlab.analysis.explorer import FINAL, ImageState, candidates, draw_view, image_alignment, image_state, \
    match_view
from assignlab.diagnostics import TrainedModel

NONE = "(none)"


def most_crowded(dataset, count: int = 1) -> list[int]:
    """Indices of the ``count`` validation images with the most objects (ties: the first)."""
    sizes = [len(dataset.coco.getAnnIds(imgIds=image_id, iscrowd=False)) for image_id in dataset.ids]
    return sorted(range(len(sizes)), key=lambda i: (-sizes[i], i))[:count]


class MatchExplorer:
    """Interactive view of which predictions each method assigns to which object (module docstring).

    Args:
        models: method name -> trained model (e.g. ``trained_models()`` of the inspection).
        dataset: the validation dataset the models were trained for.
        image_index: the first image shown (default: the most crowded).
        methods: the one or two methods shown first (default: the first two).
        output: the first output shown (default: the last decoder layer).
        score_threshold: confident predictions matched to nothing are drawn above this probability.
    """

    def __init__(self, models: dict[str, TrainedModel], dataset, image_index: int | None = None,
                 methods: Sequence[str] | None = None, output: str | None = None, score_threshold: float = 0.3):
        if not models:
            raise ValueError("MatchExplorer needs at least one model")
        self.models, self.dataset = models, dataset
        self._states: dict[tuple[str, int], ImageState] = {}
        names = list(models)
        methods = list(methods or names[:2])
        unknown = [m for m in methods if m not in models]
        if unknown:
            raise ValueError(f"unknown method(s) {unknown} (available: {', '.join(names)})")
        self.image_index = most_crowded(dataset)[0] if image_index is None else int(image_index)
        self.methods = methods[:2]
        first = self.state(self.methods[0], self.image_index)
        self.output = output or [n for n in first.output_names if n not in ("enc", FINAL)][-1]
        self.score_threshold = score_threshold
        self.object_index = 0
        self._widget = None

    # ------------------------------------------------------------------------------ data
    def state(self, method: str, image_index: int) -> ImageState:
        """The (cached) outputs and assignment of ``method`` on image ``image_index``."""
        key = (method, image_index)
        if key not in self._states:
            self._states[key] = image_state(self.models[method], self.dataset, image_index)
        return self._states[key]

    def output_for(self, state: ImageState) -> str:
        """The chosen output, or the last decoder layer for a model that lacks it (no encoder)."""
        return self.output if self.output in state.output_names else state.output_names[-2]

    def candidate_table(self, method: str) -> pd.DataFrame:
        state = self.state(method, self.image_index)
        return pd.DataFrame() if self.object_index is None else candidates(state, self.output_for(state),
                                                                           self.object_index)

    # --------------------------------------------------------------------------- drawing
    def figure(self, image_index: int | None = None, methods: Sequence[str] | None = None, output: str | None = None,
               score_threshold: float | None = None, object_index: int | None = None):
        """The picture of a selection (arguments left None keep the current one): one row per
        method, the assignment beside Align-DETR's Figures 1 and 4 for this image."""
        from matplotlib.figure import Figure

        if image_index is not None and int(image_index) != self.image_index:
            self.image_index, self.object_index = int(image_index), 0    # the old object may not exist
        self.methods = list(methods) if methods is not None else self.methods
        self.output = output or self.output
        self.score_threshold = self.score_threshold if score_threshold is None else score_threshold
        self.object_index = self.object_index if object_index is None else object_index
        if self._widget is not None:                                      # keep the controls in step
            self._sync_controls()
        fig = Figure(figsize=(15, 6.2 * len(self.methods)))
        grid = fig.add_gridspec(len(self.methods), 3, width_ratios=[2.4, 1, 1], wspace=0.25, hspace=0.3)
        names = getattr(self.dataset, "category_names", None)
        for row, method in enumerate(self.methods):
            state = self.state(method, self.image_index)
            output = self.output_for(state)
            draw_view(fig.add_subplot(grid[row, 0]), state.image, match_view(state, output, self.score_threshold),
                      selected=self.object_index, names=names)
            recall, pairs = image_alignment(state)
            ax = fig.add_subplot(grid[row, 1])
            ax.plot(recall["multiplier"], recall["recall"], marker="o")
            ax.set(ylim=(0, 1.05), xlabel="top m x N confident (m)", ylabel="recall of best-regressed",
                   title="Align-DETR Fig. 1, this image")
            ax = fig.add_subplot(grid[row, 2])
            ax.scatter(pairs["iou"], pairs["confidence"], s=12)
            ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="IoU with its object", ylabel="confidence",
                   title="Align-DETR Fig. 4, this image")
        fig.suptitle(f"validation image {self.image_index}", fontsize=10)
        return fig

    # ---------------------------------------------------------------------------- widgets
    @property
    def widget(self):
        """The explorer as an ipywidgets box (built on first use)."""
        if self._widget is None:
            self._widget = self._build()
        return self._widget

    def _build(self):
        import ipywidgets as widgets

        names = list(self.models)
        first = self.state(self.methods[0], self.image_index)
        style = {"description_width": "90px"}
        self.controls = {
            "image": widgets.IntSlider(self.image_index, 0, len(self.dataset) - 1, description="image",
                                       continuous_update=False, style=style),
            "method_a": widgets.Dropdown(options=names, value=self.methods[0], description="method", style=style),
            "method_b": widgets.Dropdown(options=[NONE, *names], value=self.methods[1] if len(self.methods) > 1 else NONE,
                                         description="beside it", style=style),
            "output": widgets.Dropdown(options=first.output_names, value=self.output, description="output", style=style),
            "threshold": widgets.FloatSlider(self.score_threshold, min=0.0, max=1.0, step=0.05, description="score >",
                                             continuous_update=False, style=style),
            "object": widgets.Dropdown(options=self._object_options(), description="object", style=style),
        }
        self.view = widgets.Output()
        for control in self.controls.values():
            control.observe(self._changed, names="value")
        box = widgets.VBox([widgets.HBox([self.controls["image"], self.controls["threshold"]]),
                            widgets.HBox([self.controls["method_a"], self.controls["method_b"]]),
                            widgets.HBox([self.controls["output"], self.controls["object"]]), self.view])
        self._render()
        return box

    def _object_options(self) -> list[tuple[str, int]]:
        state = self.state(self.methods[0], self.image_index)
        names = getattr(self.dataset, "category_names", None)
        labels = state.target["labels"].tolist()
        return [(f"{i}: {names[label] if names is not None else label}", i) for i, label in enumerate(labels)]

    def _changed(self, change) -> None:
        c = self.controls
        methods = [c["method_a"].value] + ([c["method_b"].value] if c["method_b"].value != NONE else [])
        image_changed = c["image"].value != self.image_index
        self.image_index, self.methods = c["image"].value, methods
        self.output, self.score_threshold = c["output"].value, c["threshold"].value
        self.object_index = c["object"].value
        if image_changed or change.owner is c["method_a"]:
            self.object_index = 0
            self._sync_controls()
        self._render()

    def _sync_controls(self) -> None:
        """Set the controls to the explorer's state (object and output choices of the image and the
        first method) without reacting to the change."""
        c = self.controls
        for control in c.values():
            control.unobserve(self._changed, names="value")
        state = self.state(self.methods[0], self.image_index)
        c["image"].value = self.image_index
        c["method_a"].value = self.methods[0]
        c["method_b"].value = self.methods[1] if len(self.methods) > 1 else NONE
        c["output"].options = state.output_names
        c["output"].value = self.output = self.output_for(state)
        c["threshold"].value = self.score_threshold
        c["object"].options = self._object_options()
        self.object_index = self.object_index if c["object"].options and self.object_index is not None and \
            self.object_index < len(c["object"].options) else (0 if c["object"].options else None)
        c["object"].value = self.object_index
        for control in c.values():
            control.observe(self._changed, names="value")

    def _render(self) -> None:
        from IPython.display import HTML, Image, clear_output, display

        with self.view:
            clear_output(wait=True)
            display(Image(data=figure_png(self.figure())))
            if self.output != FINAL and self.object_index is not None:  # (no object: no table)
                for method in self.methods:
                    table = self.candidate_table(method)
                    display(HTML(f"<b>{method}</b>: candidates of object {self.object_index} at output "
                                 f"{self.output}" + table.to_html(index=False, float_format=lambda v: f"{v:.3f}",
                                                                   na_rep="")))

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)
