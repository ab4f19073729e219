// The book's page behaviour, in four parts: the sidebar buttons, figures that enlarge, wide
// equations that say they scroll, and table cells aligned by what they hold. Each part works on
// the page as Sphinx wrote it and leaves it readable when JavaScript is off.

// 1. Sidebar buttons. Both themes attach their handlers to document.querySelector('.primary-toggle')
// (and '.secondary-toggle'): the first such button, which is the one in the site header that
// Jupyter Book hides. The visible buttons in the article header get no handler, so at phone width
// nothing opened the chapter list. Forward their clicks to the wired buttons, which open the
// sidebar as a dialog on narrow screens and collapse it on wide ones.
function forwardSidebarButtons() {
    ['.primary-toggle', '.secondary-toggle'].forEach(function (selector) {
        var wired = document.querySelector(selector);
        document.querySelectorAll(selector).forEach(function (button) {
            if (wired && button !== wired) {
                button.addEventListener('click', function (event) {
                    event.preventDefault();
                    wired.click();
                });
            }
        });
    });
}

// 2. Figures enlarge. Every figure of the article becomes a link to its own image (so that it
// opens full size even without this script); a click shows it at its full size over the page,
// scrollable on a phone, until a click, a tap or Escape closes it.
function closeLightbox() {
    var box = document.querySelector('.liif-lightbox');
    if (box) box.remove();
}

function openLightbox(img) {
    closeLightbox();
    var box = document.createElement('div');
    box.className = 'liif-lightbox';
    box.setAttribute('role', 'dialog');
    box.setAttribute('aria-label', 'enlarged figure (click or press Escape to close)');
    var big = document.createElement('img');
    big.src = img.currentSrc || img.src;
    big.alt = img.alt;
    box.appendChild(big);
    var close = document.createElement('button');
    close.className = 'liif-lightbox-close';
    close.textContent = '\u00d7';
    close.setAttribute('aria-label', 'close');
    box.appendChild(close);
    box.addEventListener('click', closeLightbox);
    document.body.appendChild(box);
    close.focus();
}

function makeFiguresZoomable() {
    document.querySelectorAll('article figure img, article .cell_output img').forEach(function (img) {
        if (img.closest('a') || img.closest('.animation')) return;  // a link, or the player
        var link = document.createElement('a');
        link.className = 'liif-zoom';
        link.href = img.src;
        link.title = 'enlarge';
        img.parentNode.insertBefore(link, img);
        link.appendChild(img);
        link.addEventListener('click', function (event) {
            event.preventDefault();
            openLightbox(img);
        });
    });
    document.addEventListener('keydown', function (event) {
        if (event.key === 'Escape') closeLightbox();
    });
}

// 3. Wide equations and tables. A display equation or a table wider than the column scrolls
// inside its own box (book.css); mark it so that the page says so, and so that an equation's
// number moves below it instead of standing in the middle of the cut expression. Measured
// again when the window changes size.
function markWideEquations() {
    document.querySelectorAll('article div.math').forEach(function (math) {
        var box = math.querySelector('mjx-container[display="true"]');
        if (!box) return;
        math.classList.remove('liif-wide');
        if (box.scrollWidth > box.clientWidth + 1) math.classList.add('liif-wide');
    });
    document.querySelectorAll('article table').forEach(function (table) {
        var box = table.parentElement;
        box.classList.remove('liif-wide-table');
        if (table.offsetWidth > box.clientWidth + 1) box.classList.add('liif-wide-table');
    });
}

// 4. Table cells: numbers to the right, text to the left. A cell holds a number when all it
// says is a number, with a sign, a scale prefix (x2, ×4), a unit or a ± range, or a list of
// numbers; a header cell follows its column, right when every cell below it holds a number.
var NUMBER = /^[(\[]?[+\-\u2212\u2013]?\s*(?:[x\u00d7]\s*)?\d[\d,.\u202f\u2009 ]*\s*(?:dB|s|ms|min|h|%|MB|GB|kB|k|M|px|x|\u00d7)?[)\]]?(?:\s*\u00b1\s*\d[\d.,]*\s*(?:dB|s|%)?)?$/;

function alignTableCells() {
    document.querySelectorAll('article table').forEach(function (table) {
        var numeric = {};  // column -> whether every body cell holds a number
        table.querySelectorAll('tbody tr').forEach(function (row) {
            Array.from(row.cells).forEach(function (cell, i) {
                var number = NUMBER.test(cell.textContent.trim());
                cell.classList.toggle('liif-num', number);
                numeric[i] = (numeric[i] !== false) && number;
            });
        });
        table.querySelectorAll('thead th').forEach(function (cell, i) {
            cell.classList.toggle('liif-num', numeric[i] === true);
        });
    });
}

window.liifBook = {markWideEquations: markWideEquations, NUMBER: NUMBER};

document.addEventListener('DOMContentLoaded', function () {
    forwardSidebarButtons();
    makeFiguresZoomable();
    alignTableCells();
    markWideEquations();  // the tables now; the equations again once MathJax is done
    var typeset = window.MathJax && MathJax.startup && MathJax.startup.promise;
    if (typeset) typeset.then(markWideEquations);
    else window.addEventListener('load', function () {
        if (window.MathJax && MathJax.startup) MathJax.startup.promise.then(markWideEquations);
    });
    var pending;
    window.addEventListener('resize', function () {
        clearTimeout(pending);
        pending = setTimeout(markWideEquations, 100);
    });
});
