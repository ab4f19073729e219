"""Serve the built book (_build/html) on 127.0.0.1, as the live viewer needs it.

The viewer's model runs in ONNX Runtime Web, which runs on several threads only in a
cross-origin-isolated page: every response here carries the two headers that make it so
(Cross-Origin-Opener-Policy: same-origin, Cross-Origin-Embedder-Policy: require-corp). Every
file the book loads comes from this server, so nothing is blocked by them.

Usage: python scripts/serve_book.py [--port 8000] [--dir _build/html]   (make serve)
"""
from __future__ import annotations

import argparse
import functools
import http.server
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ISOLATION_HEADERS = {'Cross-Origin-Opener-Policy': 'same-origin',
                     'Cross-Origin-Embedder-Policy': 'require-corp'}


class BookHandler(http.server.SimpleHTTPRequestHandler):
    """Static files, with the types the viewer's runtime needs whatever the system's
    mime.types says (a module script must be JavaScript, wasm compiles while it streams)."""

    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      '.mjs': 'text/javascript', '.wasm': 'application/wasm',
                      '.onnx': 'application/octet-stream'}
    isolated = True

    def end_headers(self):
        if self.isolated:
            for name, value in ISOLATION_HEADERS.items():
                self.send_header(name, value)
        super().end_headers()


def handler(directory: Path, isolated: bool = True, quiet: bool = False) -> functools.partial:
    """A request handler class for ``http.server`` serving ``directory``."""
    attrs = {'isolated': isolated}
    if quiet:
        attrs['log_message'] = lambda self, format, *args: None
    return functools.partial(type('Handler', (BookHandler,), attrs), directory=str(directory))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--port', type=int, default=8000)
    parser.add_argument('--dir', type=Path, default=ROOT / '_build' / 'html')
    args = parser.parse_args(argv)
    if not (args.dir / 'index.html').exists():
        raise SystemExit(f'no book in {args.dir}: run `make book` first')
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', args.port), handler(args.dir))
    print(f'The book: http://127.0.0.1:{args.port}/  (Ctrl-C stops the server)')
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == '__main__':
    main()
