#!/usr/bin/env bash
# Fetch the JavaScript that the rendered book serves itself instead of loading it from a CDN:
# the ipywidgets HTML manager (renders saved widget state without a kernel) and RequireJS (which
# that manager needs). Both come from the npm registry, pinned, into book/_static/widgets/.
# MathJax is bundled by the Python package sphinx-mathjax-offline and needs nothing here.
#
# Usage: scripts/book_assets.sh   (idempotent; needs npm and network only the first time)
set -euo pipefail

HTML_MANAGER_VERSION=1.0.15  # widget protocol 2, as ipywidgets 8 writes it
REQUIREJS_VERSION=2.3.8

root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/book/_static/widgets"
stamp="$dest/.versions"
want="html-manager@$HTML_MANAGER_VERSION requirejs@$REQUIREJS_VERSION"

if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    echo "book assets up to date in $dest"
    exit 0
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "@jupyter-widgets/html-manager@$HTML_MANAGER_VERSION" \
    "requirejs@$REQUIREJS_VERSION" >/dev/null)

mkdir -p "$tmp/html-manager" "$tmp/requirejs"
tar -xzf "$tmp/jupyter-widgets-html-manager-$HTML_MANAGER_VERSION.tgz" -C "$tmp/html-manager"
tar -xzf "$tmp/requirejs-$REQUIREJS_VERSION.tgz" -C "$tmp/requirejs"

rm -rf "$dest"
mkdir -p "$dest"
# embed-amd.js loads its (Font Awesome) fonts relative to its own URL, so they go along; the
# other bundles of dist/ (the non-AMD embed.js, libembed-amd.js) and source maps are not used.
find "$tmp/html-manager/package/dist" -maxdepth 1 -type f \
    \( -name 'embed-amd.js' -o -name '*.woff*' -o -name '*.ttf' -o -name '*.eot' \
       -o -name '*.svg' -o -name '*.LICENSE.txt' \) -exec cp {} "$dest/" \;
cp "$tmp/requirejs/package/require.js" "$dest/require.js"
echo "$want" > "$stamp"
echo "book assets: $(du -sh "$dest" | cut -f1) in $dest"
