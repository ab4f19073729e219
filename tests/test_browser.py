"""The built book in a real browser: every page loads offline, typesets its math, shows its
figures. Every page also reads well: its tables
are HTML tables, its equations and code fit the column at 1280 px (a table too wide for it
scrolls in its own box and says so), its outputs carry no
warnings, progress bars or temporary paths, its figures have captions and alt text, and at
390 px the menu button opens the chapter list.

At both 1280 and 390 px, every page also passes the checks of a published book: no output that
is only a placeholder; every figure drawn through ``liif_core.figures.show`` (which refuses
overlapping text, text leaving its axes and legends on lines) with its smallest text at least
8 px as displayed, or, on a phone, once enlarged; an equation wider than the column says that it
scrolls and keeps its number out of the expression; numbers right and text left in tables, no
word broken inside a table cell; every chapter reachable from the sidebar; one search box. Each
chapter's ``.ipynb`` download opens as a notebook, and one of them runs under nbval. (The live
viewer has its own test, test_viewer.py.)

Needs the book built into ``_build/html`` (``jupyter-book build .``), Debian's ``chromium`` at
/usr/bin/chromium and the ``playwright`` Python package (its bundled browsers are never used);
skips with the reason when one is missing. The book is served by ``http.server`` on 127.0.0.1,
and any request for another host is blocked and fails the test. Full-page screenshots are
written to ``_build/browser/`` for a person to look at.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from urllib.parse import unquote, urlsplit
from urllib.request import urlopen

import pytest
import yaml

from browser_pages import (HTML, ROOT, SCREENSHOTS, browser, missing_requirement,  # noqa: F401
                           open_page, server, watch)


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
    // a table wider than the column must scroll in its own box, with the cue that says so
    article.querySelectorAll('table').forEach(el => {
        const box = el.parentElement;
        const scrolls = ['auto', 'scroll'].includes(getComputedStyle(box).overflowX);
        const cue = getComputedStyle(box, '::before').content;
        if (el.offsetWidth > box.clientWidth + 1 && !(scrolls && cue.includes('scroll')))
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
        watch(page)  # nothing may leave the machine
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



# ---- A published book, at a desktop's and a phone's width ----------------------------------

WIDTHS = (1280, 390)
MIN_TEXT_PX = 8
PLACEHOLDER = re.compile(r'not available here|measurement yet|\bTODO\b|placeholder|'
                         r'coming soon|not (yet )?been run', re.I)
# A table cell that holds a number: digits with a sign, a scale prefix, a unit or a range, or
# a list of numbers.
NUMBER_CELL = re.compile(r'^[(\[]?[+\-\u2212\u2013]?\s*(?:[x\u00d7]\s*)?\d[\d,.\s]*'
                         r'(?:dB|s|ms|min|h|%|MB|GB|px|x|\u00d7)?[)\]]?'
                         r'(?:\s*\u00b1\s*\d[\d.,]*\s*(?:dB|s|%)?)?$')
TEXT_CELL = re.compile(r'[A-Za-z]{4,}')


def _chapters() -> list[str]:
    return [doc for doc in toc_pages() if doc.split('/')[-1][:2].isdigit()]


_PAGE_FACTS = r"""() => {
    const article = document.querySelector('article.bd-article') || document.body;
    const visible = el => !!(el.offsetWidth || el.offsetHeight || el.getClientRects().length)
        && getComputedStyle(el).visibility !== 'hidden';
    const facts = {outputs: [], figures: [], equations: [], cells: [], broken: []};

    article.querySelectorAll('.cell_output').forEach(el => facts.outputs.push(el.innerText));

    article.querySelectorAll('.cell_output img, figure img').forEach(img => {
        if (img.closest('.animation') || img.closest('.jupyter-widgets')) return;
        facts.figures.push({src: img.currentSrc || img.src, shown: img.clientWidth,
                            natural: img.naturalWidth, zoom: !!img.closest('a.liif-zoom')});
    });

    article.querySelectorAll('div.math').forEach(math => {
        const box = math.querySelector('mjx-container[display="true"]');
        if (!box) return;
        const eqno = math.querySelector('span.eqno');
        const b = box.getBoundingClientRect();
        const n = eqno && eqno.getBoundingClientRect();
        facts.equations.push({
            text: math.textContent.trim().slice(0, 50),
            wide: box.scrollWidth > box.clientWidth + 1,
            marked: math.classList.contains('liif-wide'),
            cue: getComputedStyle(math, '::before').content,
            // the number stands beside the expression when its box shares the expression's rows
            numberBeside: !!n && n.height > 0 && n.top < b.bottom - 1 && n.bottom > b.top + 1,
        });
    });

    article.querySelectorAll('table td, table th').forEach(cell => {
        if (!visible(cell)) return;
        if (cell.tagName === 'TD')  // a header follows its column
            facts.cells.push({text: cell.textContent.trim(),
                              align: getComputedStyle(cell).textAlign});
        // a word whose letters sit on more than one line was broken inside it; in prose a
        // break after a hyphen or a slash is the word's own, in code there is none
        const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
        let node;
        while ((node = walker.nextNode())) {
            const code = !!node.parentElement.closest('code');
            const words = code ? /\S+/g : /[^\s\-\u2013\u2014\/]+[\-\u2013\/]?/g;
            let m;
            while ((m = words.exec(node.data))) {
                const range = document.createRange();
                range.setStart(node, m.index);
                range.setEnd(node, m.index + m[0].length);
                const tops = new Set(Array.from(range.getClientRects())
                    .filter(r => r.width > 0).map(r => Math.round(r.top)));
                if (tops.size > 1) facts.broken.push(m[0]);
            }
        }
    });
    return facts;
}"""

_VISIBLE_TOC_LINKS = """() => Array.from(document.querySelectorAll('nav.bd-docs-nav a.reference'))
    .filter(a => a.offsetWidth || a.offsetHeight).map(a => a.href)"""


def _figure_metadata(src: str) -> dict | None:
    """What ``liif_core.figures.show`` wrote into a figure's PNG, or None."""
    from PIL import Image

    path = HTML / unquote(urlsplit(src).path).lstrip('/')
    if not path.is_file():
        return None
    with Image.open(path) as image:
        text = getattr(image, 'text', {}).get('liif-text')
    return json.loads(text) if text else None


def _figure_problems(page, facts: dict, width: int) -> list[str]:
    """Figures not checked when drawn, or whose smallest text is under MIN_TEXT_PX as
    displayed; on a phone, one that enlarges to legible size passes."""
    problems = []
    zoomed = 0
    for fig in facts['figures']:
        meta = _figure_metadata(fig['src'])
        name = fig['src'].rsplit('/', 1)[-1][:24]
        nth = zoomed
        zoomed += fig['zoom']
        if meta is None:
            problems.append(f'figure {name} was not checked by liif_core.figures.show')
            continue
        shown = meta['min_text_px'] * fig['shown'] / fig['natural']
        if shown >= MIN_TEXT_PX:
            continue
        if width == WIDTHS[0] or not fig['zoom']:
            problems.append(f'figure {name}: smallest text {shown:.1f} px as displayed'
                            + ('' if fig['zoom'] else ', and it does not enlarge'))
            continue
        page.locator('article a.liif-zoom').nth(nth).click()  # a tap opens it at full size
        page.locator('.liif-lightbox img').wait_for(state='visible', timeout=3000)
        ratio = page.evaluate('''() => { const i = document.querySelector('.liif-lightbox img');
                                          return i.clientWidth / i.naturalWidth; }''')
        if meta['min_text_px'] * ratio < MIN_TEXT_PX:
            problems.append(f'figure {name}: {meta["min_text_px"] * ratio:.1f} px enlarged')
        page.keyboard.press('Escape')
        if page.locator('.liif-lightbox').count():
            problems.append(f'figure {name}: the enlarged view does not close')
    return problems


@pytest.mark.parametrize('width', WIDTHS)
@pytest.mark.parametrize('doc', toc_pages())
def test_page_reads_as_published(browser, server, doc, width):
    """At this width: no placeholder output; figures checked when drawn and legible as
    displayed (on a phone, once enlarged); wide equations marked, their number apart; table
    cells aligned by what they hold and no word broken in one; every chapter in the sidebar."""
    context = browser.new_context(viewport={'width': width, 'height': 900})
    try:
        page = context.new_page()
        watch(page)  # nothing may leave the machine
        page.goto(f'{server}/{doc}.html', wait_until='load')
        _typeset(page)
        page.evaluate('''async () => {
            const imgs = Array.from(document.images);
            imgs.forEach(i => { i.loading = 'eager'; });
            await Promise.all(imgs.map(i => i.decode().catch(() => null)));
        }''')
        page.wait_for_timeout(200)  # book.js marks the wide equations once MathJax is done
        facts = page.evaluate(_PAGE_FACTS)
        problems = [f'a placeholder output: {text.strip()[:100]!r}'
                    for text in facts['outputs'] if PLACEHOLDER.search(text)]
        problems += _figure_problems(page, facts, width)

        for eq in facts['equations']:
            if eq['wide'] and not (eq['marked'] and 'scroll' in eq['cue']):
                problems.append(f'an equation wider than the column without a scroll cue: '
                                f'{eq["text"]!r}')
            if eq['wide'] and eq['numberBeside']:
                problems.append(f'an equation number beside a cut expression: {eq["text"]!r}')

        for cell in facts['cells']:
            text, align = cell['text'], cell['align']
            if NUMBER_CELL.match(text) and align not in ('right', 'end'):
                problems.append(f'a number aligned {align} in a table: {text!r}')
            elif (not NUMBER_CELL.match(text) and TEXT_CELL.search(text)
                  and align not in ('left', 'start')):
                problems.append(f'text aligned {align} in a table: {text[:40]!r}')
        problems += [f'a word broken inside a table cell: {w!r}' for w in facts['broken']]

        if width == WIDTHS[1]:  # a full-page picture of the phone view, for a person
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / f'{doc.replace("/", "_")}-{width}.png'),
                            full_page=True)
            buttons = page.locator('button.primary-toggle')  # the list is behind the menu
            next(buttons.nth(i) for i in range(buttons.count())
                 if buttons.nth(i).is_visible()).click()
            page.wait_for_timeout(300)
        linked = {unquote(urlsplit(h).path).lstrip('/').removesuffix('.html')
                  for h in page.evaluate(_VISIBLE_TOC_LINKS)}
        missing = set(toc_pages()) - linked - {toc_pages()[0]}
        if missing:
            problems.append(f'chapters not reachable from the sidebar: {sorted(missing)}')
        assert not problems, '\n'.join(problems)
    finally:
        context.close()


@pytest.mark.parametrize('doc', toc_pages())
def test_one_search_box_and_the_source(open_page, doc):
    """One search box on the page, and a link to the project's repository once
    ``_config.yml`` names it."""
    page, _ = open_page(doc)
    searches = page.evaluate('''() => Array.from(document.querySelectorAll(
        '.search-button__button, form.bd-search'))
        .filter(el => el.offsetWidth || el.offsetHeight).length''')
    assert searches == 1, f'{searches} search boxes'
    url = ((yaml.safe_load((ROOT / '_config.yml').read_text()).get('repository') or {})
           .get('url') or '')
    if not url:
        pytest.skip('no repository.url in _config.yml: the pages cannot link to the source')
    assert page.locator(f'a[href^="{url}"]').count() > 0, f'no link to {url}'


def _notebook_url(page, doc: str) -> str:
    links = page.evaluate('''() => Array.from(document.querySelectorAll('a'))
        .map(a => a.href).filter(h => h.endsWith('.ipynb'))''')
    assert links, f'{doc}: no .ipynb in the download menu'
    return links[0]


def test_chapter_notebooks_download_and_open(open_page):
    """Every chapter's download menu offers its .ipynb, and each is a valid notebook that
    starts with the chapter's set-up."""
    import nbformat

    for doc in _chapters():
        page, _ = open_page(doc)
        with urlopen(_notebook_url(page, doc)) as response:
            nb = nbformat.reads(response.read().decode('utf-8'), as_version=4)
        nbformat.validate(nb)
        code = [c.source for c in nb.cells if c.cell_type == 'code']
        assert code and 'setup()' in code[0], f'{doc}: the notebook does not start with setup()'
        page.close()


def test_a_downloaded_notebook_runs_under_nbval(open_page, tmp_path):
    """The first chapter's .ipynb, as a reader downloads it, runs cell by cell under nbval
    in the repository's layout (book/ beside data/)."""
    doc = 'book/01_images_as_functions'
    page, _ = open_page(doc)
    book = tmp_path / 'book'
    book.mkdir()
    with urlopen(_notebook_url(page, doc)) as response:
        (book / 'chapter.ipynb').write_bytes(response.read())
    (book / 'results').symlink_to(ROOT / 'book' / 'results')
    (tmp_path / 'data').symlink_to(ROOT / 'data')
    env = {**os.environ, 'PYTHONPATH': str(ROOT)}
    run = subprocess.run([sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider',
                          '--nbval-lax', 'chapter.ipynb'], cwd=book, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
