"""Figures made for the book's page: every chapter shows its figures through ``show``, which
first checks the drawn figure and refuses one that a reader could not read.

What ``layout_problems`` measures, from matplotlib's own text extents after drawing:

* two pieces of text that overlap (tick labels, titles, legend entries, annotations), or text
  over another plot or image than its own;
* text that leaves its axes (an annotation written inside a plot that runs into the frame);
* a legend that covers a plotted line;
* text smaller than ``MIN_TEXT_PX`` once the figure is shrunk to the column's width.

``show`` writes what it measured into the PNG's metadata (key ``liif-text``), so that the
browser test can check each figure's smallest text at the size the page really displays it.
"""
from __future__ import annotations

import io
import json

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.text import Text

MIN_TEXT_PX = 8.0  # smallest text height a reader can read, in CSS pixels
COLUMN_PX = 700  # about the article column on a 1280-px window (688 px in Chromium; the browser
# test checks every figure at the size the page really displays it)
METADATA_KEY = 'liif-text'
# The book's figure style: one size for every label, large enough to survive the column.
STYLE = {'figure.dpi': 100, 'savefig.dpi': 100, 'figure.figsize': (6.4, 3.2),
         'image.interpolation': 'nearest', 'font.size': 10, 'axes.titlesize': 10,
         'axes.labelsize': 10, 'xtick.labelsize': 9, 'ytick.labelsize': 9,
         'legend.fontsize': 9, 'figure.titlesize': 11}


def _texts(fig: Figure) -> list[Text]:
    """Every piece of text that drawing ``fig`` puts on the page (tick labels only for the
    ticks inside the view, none for an axes turned off)."""
    texts = list(fig.texts)
    for legend in fig.legends:
        texts += [legend.get_title(), *legend.get_texts()]
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        texts += [ax.title, ax._left_title, ax._right_title, *ax.texts]
        if ax.axison:
            for axis in ax._axis_map.values():
                if not axis.get_visible():  # e.g. the shared x axis of a twinx()
                    continue
                texts += [axis.label, axis.offsetText]
                for tick in axis._update_ticks():
                    texts += [tick.label1, tick.label2]
        legend = ax.get_legend()
        if legend is not None and legend.get_visible():
            texts += [legend.get_title(), *legend.get_texts()]
    return [t for t in texts if t.get_visible() and t.get_text().strip()]


def _overlap(a, b, slack: float = 1.0) -> bool:
    """Whether two display boxes overlap by more than ``slack`` pixels on both axes."""
    return (min(a.x1, b.x1) - max(a.x0, b.x0) > slack
            and min(a.y1, b.y1) - max(a.y0, b.y0) > slack)


def layout_problems(fig: Figure, column_px: float = COLUMN_PX) -> tuple[list[str], float]:
    """What would make ``fig`` hard to read on the page, and its smallest text in pixels at its
    own size (the PNG's pixels, ``fig.dpi``).

    Returns:
        (problems, min_text_px): a list of one-line descriptions (empty when the figure is
        fine) and the smallest font size of its text, in the PNG's pixels.
    """
    renderer = fig.canvas.get_renderer()
    fig.draw(renderer)
    texts = _texts(fig)
    boxes = [t.get_window_extent(renderer) for t in texts]
    problems = []
    for i in range(len(texts)):
        for j in range(i + 1, len(texts)):
            if _overlap(boxes[i], boxes[j]):
                problems.append(f'text {texts[i].get_text()!r} overlaps {texts[j].get_text()!r}')
    frames = [ax.get_window_extent(renderer) for ax in fig.axes if ax.get_visible()]
    for t, box in zip(texts, boxes):  # no text over another plot or image
        own = t.axes.get_window_extent(renderer) if t.axes is not None else None
        for frame in frames:
            if (own is None or frame.bounds != own.bounds) and _overlap(box, frame):
                problems.append(f'text {t.get_text()!r} overlaps another plot')
                break
    for ax in fig.axes:
        frame = ax.get_window_extent(renderer)
        for t in ax.texts:  # a note placed inside a plot stays inside it
            x, y = t.get_transform().transform(t.get_position())
            box = t.get_window_extent(renderer)
            if (t.get_visible() and frame.contains(x, y)
                    and not (box.x0 >= frame.x0 - 1 and box.x1 <= frame.x1 + 1
                             and box.y0 >= frame.y0 - 1 and box.y1 <= frame.y1 + 1)):
                problems.append(f'text {t.get_text()!r} runs out of its axes')
        legend = ax.get_legend()
        if legend is not None and legend.get_visible():
            box = legend.get_window_extent(renderer)
            for line in ax.get_lines():
                xy = line.get_transform().transform(np.asarray(line.get_xydata(), float))
                inside = ((xy[:, 0] > box.x0) & (xy[:, 0] < box.x1)
                          & (xy[:, 1] > box.y0) & (xy[:, 1] < box.y1))
                if line.get_visible() and inside.any():
                    problems.append(f'the legend covers the line {line.get_label()!r}')
    px = fig.dpi / 72
    min_px = min((t.get_fontsize() * px for t in texts), default=float('inf'))
    shrink = min(1.0, column_px / (fig.get_figwidth() * fig.dpi))
    if min_px * shrink < MIN_TEXT_PX:
        small = min(texts, key=Text.get_fontsize)
        problems.append(f'text {small.get_text()!r} is {min_px * shrink:.1f} px in a '
                        f'{column_px}-px column (at least {MIN_TEXT_PX:g})')
    return problems, min_px


def to_png(fig: Figure) -> bytes:
    """``fig`` as PNG bytes, after checking it; raises ValueError naming every problem."""
    problems, min_px = layout_problems(fig)
    if problems:
        raise ValueError('figure not fit for the page: ' + '; '.join(problems))
    buf = io.BytesIO()
    meta = {'min_text_px': round(min_px, 2), 'texts': len(_texts(fig))}
    fig.savefig(buf, format='png', bbox_inches='tight',
                metadata={METADATA_KEY: json.dumps(meta)})
    return buf.getvalue()


def show(fig: Figure | None = None) -> None:
    """Check and display ``fig`` (default: every open figure) as a PNG, then close it."""
    from IPython.display import Image, display

    figs = [fig] if fig is not None else [plt.figure(n) for n in plt.get_fignums()]
    for f in figs:
        display(Image(data=to_png(f)))
        plt.close(f)
