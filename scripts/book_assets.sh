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
# sha256 of the two npm tarballs, so a changed package is noticed rather than served.
HTML_MANAGER_SHA256=2b9d65cb7913e1c7d671757a10008b32c9c2448d4429513371e55c07d6107638
REQUIREJS_SHA256=777158e89275e16bd51aec3ef714fbcb5dc45789e7078659933bc814916d7dec

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

sha256sum --check --quiet - <<SUMS
$HTML_MANAGER_SHA256  $tmp/jupyter-widgets-html-manager-$HTML_MANAGER_VERSION.tgz
$REQUIREJS_SHA256  $tmp/requirejs-$REQUIREJS_VERSION.tgz
SUMS

mkdir -p "$tmp/html-manager" "$tmp/requirejs"
tar -xzf "$tmp/jupyter-widgets-html-manager-$HTML_MANAGER_VERSION.tgz" -C "$tmp/html-manager"
tar -xzf "$tmp/requirejs-$REQUIREJS_VERSION.tgz" -C "$tmp/requirejs"

rm -rf "$dest"
mkdir -p "$dest"
# embed-amd.js loads its (Font Awesome) fonts from its module's folder, which
# book/_static/widgets_setup.js maps to this one, so they go along; the other bundles of
# dist/ (the non-AMD embed.js, libembed-amd.js) and source maps are not used.
find "$tmp/html-manager/package/dist" -maxdepth 1 -type f \
    \( -name 'embed-amd.js' -o -name '*.woff*' -o -name '*.ttf' -o -name '*.eot' \
       -o -name '*.svg' -o -name '*.LICENSE.txt' \) -exec cp {} "$dest/" \;
cp "$tmp/requirejs/package/require.js" "$dest/require.js"
echo "$want" > "$stamp"
echo "book assets: $(du -sh "$dest" | cut -f1) in $dest"
