"""The page check that every figure of the book passes before it is shown
(``liif_core.figures``): it finds what a reader would trip over, and passes a clean figure."""
from __future__ import annotations

import io
import json

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from liif_core.figures import METADATA_KEY, STYLE, layout_problems, to_png  # noqa: E402


@pytest.fixture(autouse=True)
def style():
    with plt.rc_context(STYLE):
        yield
    plt.close('all')


def test_clean_figure_passes_and_carries_its_smallest_text():
    fig, ax = plt.subplots()
    ax.plot([1, 2, 3], [3, 1, 2], label='a line')
    ax.set(title='a title', xlabel='x', ylabel='y')
    ax.legend(loc='upper right')
    problems, min_px = layout_problems(fig)
    assert problems == []
    assert min_px == pytest.approx(STYLE['xtick.labelsize'] * 100 / 72)
    meta = json.loads(Image.open(io.BytesIO(to_png(fig))).text[METADATA_KEY])
    assert meta['min_text_px'] == pytest.approx(min_px, abs=0.01)


def test_colliding_tick_labels_are_found():
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.set_xticks(range(6), [f'{10000 + 2000 * i}' for i in range(6)])
    problems, _ = layout_problems(fig)
    assert any('overlaps' in p for p in problems), problems


def test_a_legend_on_a_line_is_found():
    fig, ax = plt.subplots()
    x = np.linspace(0, 1, 50)
    ax.plot(x, 1 - x, label='falls')
    ax.legend(loc='upper left')
    problems, _ = layout_problems(fig)
    assert problems == ["the legend covers the line 'falls'"]


def test_text_out_of_its_axes_and_small_text_are_found():
    fig, ax = plt.subplots()
    ax.set(xlim=(0, 1), ylim=(0, 1))
    ax.text(0.97, 0.5, '44 s, a long note')
    ax.set_title('tiny', fontsize=4)
    problems = layout_problems(fig)[0]
    assert "text '44 s, a long note' runs out of its axes" in problems
    assert any(p.startswith("text 'tiny' is 5.6 px") for p in problems), problems
    with pytest.raises(ValueError, match='figure not fit for the page'):
        to_png(fig)


def test_axes_turned_off_carry_no_tick_labels():
    fig, ax = plt.subplots()
    ax.imshow(np.zeros((4, 4)))
    ax.axis('off')
    ax.set_title('an image')
    assert layout_problems(fig) == ([], pytest.approx(STYLE['axes.titlesize'] * 100 / 72))


def test_the_hidden_axis_of_a_twin_carries_no_tick_labels():
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    ax.twinx().plot([0, 1], [1, 0])
    assert layout_problems(fig)[0] == []


def test_a_title_over_the_plot_above_is_found():
    fig, axes = plt.subplots(2, 1, figsize=(3, 3))
    for ax in axes:
        ax.imshow(np.zeros((4, 4)))
        ax.axis('off')
    axes[1].set_title('a title\nof\nfive\nlines\nhere')
    assert "text 'a title\\nof\\nfive\\nlines\\nhere' overlaps another plot" in \
        layout_problems(fig)[0]
