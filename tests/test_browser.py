"""The built book in a real browser: every page loads offline, typesets its math and shows its
figures. Every page also reads well: its tables are HTML tables, its equations and code fit the
column at 1280 px, its outputs carry no warnings, progress bars or temporary paths, its figures
have captions and alt text, and at 390 px the menu button opens the chapter list. (The live
viewer has its own test, test_viewer.py.)

Needs the book built into ``_build/html`` (``jupyter-book build .``), Debian's ``chromium`` at
/usr/bin/chromium and the ``playwright`` Python package (its bundled browsers are never used);
skips with the reason when one is missing. The book is served by ``http.server`` on 127.0.0.1,
and any request for another host is blocked and fails the test. Full-page screenshots are
written to ``_build/browser/`` for a person to look at.
"""
from __future__ import annotations

from urllib.parse import urlsplit

import pytest
import yaml

from browser_pages import (HTML, ROOT, SCREENSHOTS, browser, missing_requirement,  # noqa: F401
                           open_page, server)


def toc_pages() -> list[str]:
    """Every document of ``_toc.yml`` (root first), as a path without suffix."""
    toc = yaml.safe_load((ROOT / '_toc.yml').read_text())
    pages = [toc['root']]

    def walk(entries):
        for entry in entries or []:
            if 'file' in entry:
                pages.append(entry['file'])
            walk(entry.get('sections'))

    walk(toc.get('chapters'))
    for part in toc.get('parts', []):  # a toc may group its chapters into parts
        walk(part.get('chapters'))
    return pages


pytestmark = pytest.mark.skipif(missing_requirement() is not None,
                                reason=str(missing_requirement()))


def _typeset(page) -> None:
    """Wait until MathJax has typeset the page (Sphinx loads it only on pages with math)."""
    if page.locator('.math').count() == 0:
        return
    page.wait_for_function('() => window.MathJax && MathJax.startup && MathJax.startup.promise')
    page.evaluate('() => MathJax.startup.promise')


@pytest.mark.parametrize('doc', toc_pages())
def test_page_loads_offline_with_math_and_figures(open_page, doc):
    assert (HTML / f'{doc}.html').exists(), f'{doc} is in _toc.yml but was not built'
    page, log = open_page(doc)
    _typeset(page)
    # Images: force every one to load now (none may be lazy) and wait for it to decode.
    broken = page.evaluate('''async () => {
        const imgs = Array.from(document.images);
        imgs.forEach(i => { i.loading = 'eager'; });
        await Promise.all(imgs.map(i => i.decode().catch(() => null)));
        return imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src);
    }''')
    math_sources = page.locator('.math').count()
    typeset = page.locator('mjx-container').count()
    math_errors = page.locator('mjx-merror').count()

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f'{doc.replace("/", "_")}.png'), full_page=True)

    assert not log.offsite, f'requests that left 127.0.0.1: {log.offsite}'
    assert not log.failed, f'failed requests: {log.failed}'
    assert not log.console_errors, f'console errors: {log.console_errors}'
    assert not broken, f'images that did not load: {broken}'
    assert typeset >= math_sources, f'{math_sources} math blocks but {typeset} typeset'
    assert math_errors == 0, f'{math_errors} MathJax errors'
    if doc.split('/')[-1][:2].isdigit():  # numbered chapters; not intro, api, credits
        assert page.locator('img').count() > 0, 'a chapter without a single figure'


# Measured in the browser on a page of the book at desktop width, after MathJax has typeset it.
_READING_PROBLEMS = r"""() => {
    const article = document.querySelector('article.bd-article') || document.body;
    const problems = [];
    const overflows = el => el.scrollWidth > el.clientWidth + 1;
    const name = el => (el.id || el.className || el.tagName).toString().slice(0, 60);

    // Markdown tables that were printed as text: a |---| row outside the code itself.
    const prose = article.cloneNode(true);
    prose.querySelectorAll('.cell_input, mjx-container, script').forEach(el => el.remove());
    if (/\|\s*:?-{3,}:?\s*\|/.test(prose.textContent))
        problems.push('a markdown table printed as text (|---|)');

    // Display equations, code and tables wider than the column.
    article.querySelectorAll('mjx-container[display="true"]').forEach(el => {
        if (overflows(el))
            problems.push(`equation ${el.scrollWidth}px wide in ${el.clientWidth}px`);
    });
    article.querySelectorAll('div.cell pre').forEach(el => {
        if (overflows(el))
            problems.push(`code or output ${el.scrollWidth}px wide in ${el.clientWidth}px: `
                          + el.textContent.split('\n').reduce((a, b) => a.length > b.length ? a : b));
    });
    article.querySelectorAll('table').forEach(el => {
        const box = el.parentElement;
        if (el.offsetWidth > box.clientWidth + 1)
            problems.push(`table ${el.offsetWidth}px wide in ${box.clientWidth}px`);
    });

    // Output that is noise to a reader: stderr, warnings, progress bars, temporary paths, and
    // equation labels written as text instead of numbers.
    if (article.querySelector('.output.stderr, .stderr'))
        problems.push('a stderr output block');
    const outputs = Array.from(article.querySelectorAll('.cell_output'))
        .map(el => el.textContent).join('\n');
    for (const [pattern, what] of [[/\w*Warning\b/, 'a warning'],
                                   [/\d+it\/s\]|\|[#█▏▎▍▌▋▊▉ ]+\|/, 'a progress bar'],
                                   [/\/tmp\/|\/var\/folders\//, 'a temporary path']]) {
        const found = outputs.match(pattern);
        if (found) problems.push(`${what} in an output: ${found[0]}`);
    }
    const label = article.textContent.match(/\beq-[a-z][a-z0-9-]*/);
    if (label) problems.push(`an equation label as text: ${label[0]}`);

    // Figures: every image has a caption and alt text of several words that is not a file name.
    article.querySelectorAll('img').forEach(img => {
        const alt = (img.getAttribute('alt') || '').trim();
        const where = img.closest('figure');
        const caption = where && where.querySelector('figcaption');
        if (alt.split(/\s+/).length < 4 || /\.(png|jpe?g|svg|gif)$|^[0-9a-f]{16,}$/i.test(alt))
            problems.push(`an image without real alt text: "${alt}"`);
        if (!caption || !caption.textContent.trim())
            problems.push(`an image without a caption (alt "${alt.slice(0, 40)}")`);
    });
    return problems;
}"""


@pytest.mark.parametrize('doc', toc_pages())
def test_page_reads_well_at_desktop_width(open_page, doc):
    """At 1280 px: real tables, equations and code inside the column, no noisy output, and
    figures with captions and alt text."""
    page, log = open_page(doc)
    _typeset(page)
    problems = page.evaluate(_READING_PROBLEMS)
    assert not problems, '\n'.join(problems)


@pytest.mark.parametrize('doc', toc_pages())
def test_sidebar_opens_on_a_phone(browser, server, doc):
    """At 390 px the page does not scroll sideways, the chapter list is hidden, and the
    visible menu button opens and closes it."""
    context = browser.new_context(viewport={'width': 390, 'height': 844})
    try:
        page = context.new_page()
        page.route('**/*', lambda r: r.continue_() if urlsplit(r.request.url).hostname
                   == '127.0.0.1' else r.abort())
        page.goto(f'{server}/{doc}.html', wait_until='load')
        _typeset(page)
        width = page.evaluate('() => document.documentElement.scrollWidth')
        assert width <= 390, f'the page is {width} px wide: it scrolls sideways on a phone'
        toc_link = page.locator('nav.bd-docs-nav a.reference').first
        assert not toc_link.is_visible(), 'the chapter list shows before it is asked for'
        buttons = page.locator('button.primary-toggle')
        visible = [buttons.nth(i) for i in range(buttons.count()) if buttons.nth(i).is_visible()]
        assert visible, 'no visible button opens the chapter list'
        visible[0].click()
        page.wait_for_timeout(300)
        assert toc_link.is_visible(), 'the menu button did not open the chapter list'
        page.keyboard.press('Escape')
        page.wait_for_timeout(300)
        assert not toc_link.is_visible(), 'the chapter list did not close again'
    finally:
        context.close()


def test_math_is_typeset(open_page):
    """The chapter with the most equations renders them through the bundled MathJax."""
    page, log = open_page('book/01_images_as_functions')
    _typeset(page)
    assert page.locator('mjx-container[display="true"]').count() >= 3
    assert page.evaluate('() => MathJax.version').startswith('3')
    assert not log.offsite
