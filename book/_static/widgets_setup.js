// Set-up for the ipywidgets HTML manager (widgets/embed-amd.js), loaded just before it.
(function () {
    // 1. Offline assets. The manager finds its icon fonts relative to the RequireJS URL of its
    // own module, '@jupyter-widgets/html-manager/dist/...', which normally resolves to a CDN or
    // to a folder beside the page. Map that module path, and the manager's assets path, to
    // widgets/ next to this file, so every page works offline at any depth.
    var staticDir = document.currentScript.src.replace(/[^/]*$/, '');
    window.__jupyter_widgets_assets_path__ = staticDir + 'widgets/';
    window.require.config({
        paths: {'@jupyter-widgets/html-manager/dist': staticDir + 'widgets'},
    });

    // 2. MathJax. The manager typesets widget labels through MathJax 2's
    // MathJax.Hub.Queue(['Typeset', MathJax.Hub, element]); the book runs MathJax 3, which has
    // no Hub. Map that one call onto MathJax 3, once MathJax has replaced its configuration
    // object (deferred scripts have run by DOMContentLoaded; widgets render on load).
    document.addEventListener('DOMContentLoaded', function () {
        var mathjax = window.MathJax;
        if (mathjax && !mathjax.Hub) {
            mathjax.Hub = {
                Queue: function (job) {
                    if (mathjax.typesetPromise) {
                        mathjax.typesetPromise([job[2]]);
                    }
                },
            };
        }
    });
})();
