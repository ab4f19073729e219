"""Offer each executed chapter as an ``.ipynb`` in the page's download menu.

sphinx-book-theme lists a notebook in that menu only when a launch service (Binder, Colab, ...)
is configured, and this book configures none: nothing it serves points at another host. This
does the theme's copy without one: the notebook that myst-nb executed for the page
(``_build/jupyter_execute/<page>.ipynb``, outputs included) goes to ``_sources/`` beside the
page's source, and the theme's download menu then offers it as ``.ipynb``. The notebook runs
where the chapter runs, in the repository's ``book/`` folder.
"""
from __future__ import annotations

import shutil
from pathlib import Path


def _offer_notebook(app, pagename, templatename, context, doctree):
    executed = Path(app.outdir).parent / 'jupyter_execute' / f'{pagename}.ipynb'
    if not executed.is_file():  # a page without code (intro, API, credits)
        return
    target = Path(app.outdir) / '_sources' / f'{pagename}.ipynb'
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(executed, target)
    context['ipynb_source'] = f'{pagename}.ipynb'


def setup(app):
    # before the theme's header buttons (priority 501), which read ipynb_source
    app.connect('html-page-context', _offer_notebook, priority=500)
    return {'parallel_read_safe': True, 'parallel_write_safe': True}
