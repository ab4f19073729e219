"""The live viewer in Chromium (one wasm thread, no GPU): every view it decodes is
``liif_core.render`` of the same window, and it answers the reader.

For fixed views of chapter 7's photograph (a x12.5 window, a x30 window, a window past the
border) and of an uploaded PNG (x1.5 and x4, whole), the viewer's float RGB matches PyTorch's
``render(model, lr, scale=..., window=...)``, computed here on the same input, within
``MAX_ABS``, and the canvas pixels are those floats in 8 bits, at most ``MAX_OFF_SHARE`` of
them one level off. Dragging, the wheel, the + key, the local-ensemble toggle (chapter 3), the
cell slider (chapter 5) and an uploaded PNG each change the canvas, and the toggled or
slid views match ``render`` too. No page logs a console error or asks another host for
anything. The page weight (bytes transferred) and the decode timings are printed and written to
``_build/browser/viewer.json``; nothing asserts a time.

Needs what test_browser.py needs (the built book, Chromium, playwright); skips with the reason
when one is missing.
"""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from PIL import Image

from browser_pages import (HTML, SCREENSHOTS, browser, missing_requirement,  # noqa: F401
                           serve, server, watch)
from liif_core import imageio, render, resize_fn
from liif_core.pretrained import load_pretrained

pytestmark = pytest.mark.skipif(missing_requirement() is not None,
                                reason=str(missing_requirement()))

MAX_ABS = 1e-4  # in [0, 1]
MAX_OFF_SHARE = 1e-3  # canvas pixels one 8-bit level off; none may be more
VIEW = 128  # the viewer's views are VIEW x VIEW output pixels
PLAYGROUND, ENSEMBLE, CELL = 'book/07_playground', 'book/03_local_ensemble', 'book/05_cell_decoding'
MEASURED: dict[str, object] = {}  # written to _build/browser/viewer.json at the end

# Everything the hook needs in one call: wait for the viewer to be idle, then its last view.
LAST_VIEW = '''async () => {
    const v = window.liifViewers[0];
    await v.whenIdle();
    const c = v.canvas, pixels = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    return {view: v.lastDecode.view, rgb: Array.from(v.lastDecode.rgb),
            pixels: Array.from(pixels), scale: v.scale, timings: v.timings};
}'''
PAGE_WEIGHT = '''() => performance.getEntriesByType('navigation')
    .concat(performance.getEntriesByType('resource'))
    .reduce((sum, entry) => sum + entry.transferSize, 0)'''


@pytest.fixture(scope='module')
def model():
    return load_pretrained().eval()


def page_input(name: str) -> torch.Tensor:
    """A viewer's input as the built page serves it: (3, h, w) in [0, 1]."""
    return imageio.from_pil(Image.open(HTML / '_static' / 'liif' / 'images' / name)).values


def open_viewer(browser, server, doc: str, width: int = 1280):
    """Load ``doc`` at ``width`` px, scroll its viewer into view and wait for its first view.
    Returns (context, page, log)."""
    context = browser.new_context(viewport={'width': width, 'height': 900})
    page = context.new_page()
    log = watch(page)
    page.goto(f'{server}/{doc}.html', wait_until='load')
    page.locator('div.liif-viewer').first.scroll_into_view_if_needed()
    page.evaluate('() => window.liifViewers[0].ready')
    page.evaluate(LAST_VIEW)
    return context, page, log


def check_clean(log) -> None:
    assert not log.offsite, f'requests that left 127.0.0.1: {log.offsite}'
    assert not log.failed, f'failed requests: {log.failed}'
    assert not log.console_errors, f'console errors: {log.console_errors}'


def assert_matches(last: dict, reference: torch.Tensor, what: str) -> None:
    """The viewer's floats and canvas against a (3, VIEW, VIEW) reference from render."""
    expected = reference.permute(1, 2, 0).reshape(-1).numpy()  # (VIEW*VIEW*3,)
    rgb = np.asarray(last['rgb'], np.float32)
    diff = float(np.abs(rgb - expected).max())
    pixels = np.asarray(last['pixels'], np.int32).reshape(-1, 4)[:, :3].reshape(-1)
    levels = np.abs(pixels - np.rint(expected * 255).astype(np.int32))
    off = int((levels.reshape(-1, 3).max(axis=1) > 0).sum())
    MEASURED.setdefault('exactness', {})[what] = {'max_abs': diff, 'pixels_off': off,
                                                  'max_levels': int(levels.max())}
    print(f'{what}: max |viewer - render| {diff:.2e}, {off} of {VIEW * VIEW} pixels off by '
          f'up to {int(levels.max())} level')
    assert diff <= MAX_ABS, (what, diff)
    assert levels.max() <= 1, (what, int(levels.max()))
    assert off <= MAX_OFF_SHARE * VIEW * VIEW, (what, off)


def set_view(page, scale: float, top: float, left: float) -> dict:
    page.evaluate('v => window.liifViewers[0].setView(v)', {'scale': scale, 'top': top,
                                                            'left': left})
    return page.evaluate(LAST_VIEW)


@pytest.fixture(scope='module')
def playground(browser, server):
    context, page, log = open_viewer(browser, server, PLAYGROUND)
    MEASURED['page_weight_bytes'] = page.evaluate(PAGE_WEIGHT)
    MEASURED['backend'] = page.evaluate('() => window.liifViewers[0].backend')
    MEASURED['first_view_ms'] = page.evaluate('() => window.liifViewers[0].timings')
    print(f"chapter 7: {MEASURED['page_weight_bytes']:,} bytes transferred, "
          f"{MEASURED['backend']}, timings {MEASURED['first_view_ms']}")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / 'viewer_07_1280.png'), full_page=True)
    yield page, log
    context.close()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    (SCREENSHOTS / 'viewer.json').write_text(json.dumps(MEASURED, indent=1))


@pytest.mark.parametrize('what, scale, top, left', [
    ('x12.5 window', 12.5, 700.25, 610.5),
    ('x30 window', 30, 2500, 1900),
    ('x3 window past the border', 3, -50.5, 300),
])
def test_views_match_render(playground, model, what, scale, top, left):
    page, log = playground
    last = set_view(page, scale, top, left)
    assert last['view']['scale'] == scale and last['view']['top'] == top
    reference = render(model, page_input('astronaut-128.png'), scale=scale,
                       window=(top, left, VIEW, VIEW))
    assert_matches(last, reference, what)
    timings = last['timings']
    MEASURED.setdefault('decode_ms', []).append(
        {'view': what, 'preview': timings['preview'], 'full': timings['full']})
    print(f"{what}: preview ({timings['preview']['queries']} queries) "
          f"{timings['preview']['ms']:.0f} ms, full ({timings['full']['queries']} queries) "
          f"{timings['full']['ms']:.0f} ms")
    check_clean(log)


def canvas_bytes(page) -> list[int]:
    return page.evaluate(LAST_VIEW)['pixels']


def test_drag_wheel_and_keys_move_the_view(playground):
    page, log = playground
    set_view(page, 4, 200, 250)
    canvas = page.locator('canvas.liif-viewer__canvas').first
    box = canvas.bounding_box()
    x, y = box['x'] + box['width'] / 2, box['y'] + box['height'] / 2

    before = canvas_bytes(page)
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 60, y + 40, steps=5)
    page.mouse.up()
    state = page.evaluate('() => { const v = window.liifViewers[0]; return [v.top, v.left]; }')
    assert state[0] < 200 and state[1] < 250, f'a drag right and down moved the view to {state}'
    assert canvas_bytes(page) != before, 'dragging did not change the canvas'

    before = canvas_bytes(page)
    page.mouse.wheel(0, -300)  # wheel up: zoom in about the pointer
    last = page.evaluate(LAST_VIEW)
    assert last['scale'] > 4, f'the wheel did not zoom in: x{last["scale"]}'
    assert last['pixels'] != before, 'zooming with the wheel did not change the canvas'

    before, scale = last['pixels'], last['scale']
    canvas.focus()
    page.keyboard.press('+')
    last = page.evaluate(LAST_VIEW)
    assert last['scale'] == pytest.approx(scale * 1.25), 'the + key did not zoom in by 1.25'
    assert last['pixels'] != before, 'the + key did not change the canvas'
    check_clean(log)


def test_upload_encodes_the_readers_image(playground, model, tmp_path):
    """A PNG picked with the file input is encoded in the page; whole views of it at x1.5 and
    x4 match render, and a picture over the size limit is reduced first, with a note."""
    page, log = playground
    small = resize_fn(page_input('hopper-64x54.png'), (24, 20))  # (3, 24, 20), k/255 values
    path = tmp_path / 'mine.png'
    Image.fromarray(imageio.quantise(small.permute(1, 2, 0), 8)).save(path)
    before = canvas_bytes(page)
    page.locator('div.liif-viewer input[type=file]').set_input_files(str(path))
    page.wait_for_function('() => /encoded in/.test('
                           'document.querySelector(".liif-viewer__note").textContent)')
    last = page.evaluate(LAST_VIEW)
    assert last['pixels'] != before, 'uploading a PNG did not change the canvas'
    MEASURED['upload_encode_ms'] = last['timings']['encode']
    for scale in (1.5, 4):
        H, W = round(24 * scale), round(20 * scale)
        rgb = np.asarray(page.evaluate(
            'v => window.liifViewers[0].decodeRaw(v).then(a => Array.from(a))',
            {'scale': scale, 'top': 0, 'left': 0, 'height': H, 'width': W}), np.float32)
        reference = render(model, small, scale=scale).permute(1, 2, 0).reshape(-1).numpy()
        diff = float(np.abs(rgb - reference).max())
        MEASURED.setdefault('exactness', {})[f'upload x{scale} whole'] = {'max_abs': diff}
        print(f'upload, x{scale} whole ({W} x {H}): max |viewer - render| {diff:.2e}')
        assert diff <= MAX_ABS, (scale, diff)

    big = tmp_path / 'big.png'
    Image.new('RGB', (400, 100), (200, 30, 30)).save(big)
    page.locator('div.liif-viewer input[type=file]').set_input_files(str(big))
    page.wait_for_function('() => /Reduced from 400 × 100/.test('
                           'document.querySelector(".liif-viewer__note").textContent)')
    assert page.evaluate('() => window.liifViewers[0].input') == {'height': 40, 'width': 160}
    check_clean(log)


def test_ensemble_toggle_shows_and_hides_the_seams(browser, server, model):
    context, page, log = open_viewer(browser, server, ENSEMBLE)
    try:
        on = page.evaluate(LAST_VIEW)
        page.locator('div.liif-viewer input[type=checkbox]').uncheck()
        off = page.evaluate(LAST_VIEW)
        assert off['pixels'] != on['pixels'], 'switching the ensemble off changed nothing'
        assert off['view']['ensemble'] is False
        nearest_only = copy.deepcopy(model)
        nearest_only.local_ensemble = False
        view = off['view']
        reference = render(nearest_only, page_input('hopper-64x54.png'), scale=view['scale'],
                           window=(view['top'], view['left'], VIEW, VIEW))
        assert_matches(off, reference, 'chapter 3, no local ensemble')
        page.locator('div.liif-viewer input[type=checkbox]').check()
        assert page.evaluate(LAST_VIEW)['pixels'] == on['pixels'], 'switching it on again'
        check_clean(log)
    finally:
        context.close()


def test_cell_slider_changes_the_view(browser, server, model):
    context, page, log = open_viewer(browser, server, CELL)
    try:
        before = page.evaluate(LAST_VIEW)
        slider = page.locator('input.liif-viewer__cell-slider')
        slider.fill(slider.get_attribute('min'))  # the cell of x1
        after = page.evaluate(LAST_VIEW)
        assert after['pixels'] != before['pixels'], 'the cell slider did not change the canvas'
        view = after['view']
        assert view['scale'] == before['view']['scale'], 'the cell slider moved the view'
        lr = page_input('astronaut-badges-64.png')
        assert view['cell'] == pytest.approx([2 / lr.shape[1], 2 / lr.shape[2]])
        reference = render(model, lr, scale=view['scale'],
                           window=(view['top'], view['left'], VIEW, VIEW), cell=view['cell'])
        assert_matches(after, reference, 'chapter 5, the cell of x1 at x12')
        check_clean(log)
    finally:
        context.close()


def test_isolated_page_decodes_on_threads(browser, model):
    """Served as `make serve` serves it (cross-origin isolated), the viewer runs wasm on every
    core the browser reports (up to 8), with the same result."""
    url, httpd = serve(isolated=True)
    try:
        context, page, log = open_viewer(browser, url, ENSEMBLE)
        try:
            assert page.evaluate('() => crossOriginIsolated')
            cores = page.evaluate('() => navigator.hardwareConcurrency')
            backend = page.evaluate('() => window.liifViewers[0].backend')
            threads = min(cores, 8)
            assert backend == f'wasm, {threads} thread' + ('s' if threads > 1 else ''), backend
            last = page.evaluate(LAST_VIEW)
            view = last['view']
            reference = render(model, page_input('hopper-64x54.png'), scale=view['scale'],
                               window=(view['top'], view['left'], VIEW, VIEW))
            assert_matches(last, reference, f'chapter 3, {backend}')
            MEASURED['isolated'] = {'backend': backend, 'timings': last['timings']}
            check_clean(log)
        finally:
            context.close()
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_phone_width(browser, server):
    """At 390 px the viewer fits the screen, both views show, and a drag moves them."""
    context, page, log = open_viewer(browser, server, PLAYGROUND, width=390)
    try:
        width = page.evaluate('() => document.documentElement.scrollWidth')
        assert width <= 390, f'the page is {width} px wide: it scrolls sideways on a phone'
        canvases = page.locator('canvas.liif-viewer__canvas')
        boxes = [canvases.nth(i).bounding_box() for i in range(2)]
        assert all(b['width'] >= 150 and b['x'] + b['width'] <= 390 for b in boxes), boxes
        before = canvas_bytes(page)
        x, y = boxes[0]['x'] + boxes[0]['width'] / 2, boxes[0]['y'] + boxes[0]['height'] / 2
        page.mouse.move(x, y)
        page.mouse.down()
        page.mouse.move(x - 40, y - 30, steps=4)
        page.mouse.up()
        assert canvas_bytes(page) != before, 'dragging did not change the canvas'
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / 'viewer_07_390.png'), full_page=True)
        check_clean(log)
    finally:
        context.close()


def test_static_fallback_without_a_server(browser):
    """Opened as a file, the live view says in one line how to serve the book and the
    pre-rendered frames stay."""
    context = browser.new_context(viewport={'width': 1280, 'height': 900})
    try:
        page = context.new_page()
        errors = []
        page.on('console', lambda m: m.type == 'error' and errors.append(m.text))
        page.on('pageerror', lambda e: errors.append(f'uncaught: {e}'))
        page.goto((HTML / f'{PLAYGROUND}.html').as_uri(), wait_until='load')
        page.locator('div.liif-viewer').first.scroll_into_view_if_needed()
        page.wait_for_function('() => /make serve/.test('
                               'document.querySelector(".liif-viewer__status").textContent)')
        status = page.locator('.liif-viewer__status').first.text_content()
        assert '\n' not in status.strip() and len(status) < 250, status
        assert page.locator('#fig-playground-zoom img').is_visible()
        assert not page.locator('canvas.liif-viewer__canvas').first.is_visible()
        assert not errors, errors
    finally:
        context.close()
