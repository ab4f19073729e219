"""Export the shipped default weights to ONNX for the book's live viewer: encoder.onnx,
decoder.onnx, decoder_no_ensemble.onnx and model.json (see liif_core/export.py).

    python scripts/export_viewer_models.py [OUT_DIR]   (default book/_static/liif/models)

The book build runs this; the files are generated, never tracked (.gitignore).
"""
import sys
import time
from pathlib import Path

from liif_core.export import GRAPHS, export_onnx
from liif_core.pretrained import DEFAULT_MODEL

ROOT = Path(__file__).resolve().parent.parent
VIEWER_MODELS = ROOT / 'book' / '_static' / 'liif' / 'models'


def export_viewer_models(out_dir: str | Path = VIEWER_MODELS) -> dict:
    """The default shipped model as the viewer's graphs in ``out_dir``; export_onnx's answer."""
    return export_onnx(DEFAULT_MODEL, out_dir)


def main(argv: list[str]) -> int:
    start, cpu = time.perf_counter(), time.process_time()
    info = export_viewer_models(argv[0] if argv else VIEWER_MODELS)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    for key in [*GRAPHS, 'model_json']:
        path = Path(info['paths'][key])
        print(f'{path}  {path.stat().st_size:,} bytes')
    print(f"{info['name']} exported in {seconds:.1f} s ({cpu:.1f} s of CPU; torch "
          f"{info['torch']}, opset {info['opset']})")
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
