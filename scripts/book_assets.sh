#!/usr/bin/env bash
# Fetch the JavaScript that the rendered book serves itself instead of loading it from a CDN:
# ONNX Runtime Web, which runs the live viewer's exported model in the page
# (book/_static/liif/viewer.js). It comes from the npm registry, pinned and checked, into
# book/_static/ort/. MathJax is bundled by the Python package sphinx-mathjax-offline and needs
# nothing here; the model files are made from the shipped weights by
# `liif export book/_static/liif/models` (the Makefile's book target).
#
# Usage: scripts/book_assets.sh   (idempotent; needs npm and network only the first time)
set -euo pipefail

ORT_VERSION=1.31.1
# sha256 of the npm tarball, so a changed package is noticed rather than served.
ORT_SHA256=bdccdb9fbb9ab537247c0c734e9b1d2b1b338b4f2a09faa58f0dc1cfa27c312c
# Only what the viewer loads (the package holds 150 MB of other builds and source maps):
# the wasm build as a classic script, its wasm module and loader (14.9 MB in all), and the
# WebGPU build with its own wasm and loader (28.8 MB), fetched only by browsers that offer a
# WebGPU adapter.
ORT_FILES=(ort.wasm.min.js ort-wasm-simd-threaded.mjs ort-wasm-simd-threaded.wasm
           ort.webgpu.min.js ort-wasm-simd-threaded.asyncify.mjs
           ort-wasm-simd-threaded.asyncify.wasm)

root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/book/_static/ort"
stamp="$dest/.versions"
want="onnxruntime-web@$ORT_VERSION ${ORT_FILES[*]}"

# The ipywidgets manager and RequireJS that earlier versions of the book served.
rm -rf "$root/book/_static/widgets"

if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    echo "book assets up to date in $dest"
    exit 0
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "onnxruntime-web@$ORT_VERSION" >/dev/null)
echo "$ORT_SHA256  $tmp/onnxruntime-web-$ORT_VERSION.tgz" | sha256sum --check --quiet -
tar -xzf "$tmp/onnxruntime-web-$ORT_VERSION.tgz" -C "$tmp"

rm -rf "$dest"
mkdir -p "$dest"
for file in "${ORT_FILES[@]}"; do
    cp "$tmp/package/dist/$file" "$dest/"
done
echo "$want" > "$stamp"
(cd "$dest" && for file in "${ORT_FILES[@]}"; do
    echo "book assets: $file $(stat -c %s "$file") bytes"; done)
