// The ipywidgets HTML manager (widgets/embed-amd.js) finds its icon fonts relative to the
// RequireJS URL of its own module, '@jupyter-widgets/html-manager/dist/...', which normally
// resolves to a CDN or to a folder beside the page. Map that module path, and the manager's
// assets path, to widgets/ next to this file, so every page works offline at any depth.
(function () {
    var staticDir = document.currentScript.src.replace(/[^/]*$/, '');
    window.__jupyter_widgets_assets_path__ = staticDir + 'widgets/';
    window.require.config({
        paths: {'@jupyter-widgets/html-manager/dist': staticDir + 'widgets'},
    });
})();
