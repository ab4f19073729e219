"""Host memory of an ``in_memory`` image set under ``torchrun``, per process.

    python scripts/ddp_memory.py --images 8 --nproc 2       # DIV2K-shaped images, 2040x1356

Makes a folder of synthetic images, starts ``torchrun --nproc_per_node N`` (gloo, CPU), and in
every process builds the ``image-folder`` dataset with ``cache: in_memory`` and reads each item
once, as a training epoch does. Each process reports how much its memory grew, from
``/proc/self/smaps_rollup``: RSS (which counts shared pages in every process that maps them),
PSS (shared pages divided among the processes that map them) and USS (pages of this process
alone). The DIV2K figure scales the mean PSS growth from these images to the 800 DIV2K training
images. Prints one JSON object; Linux only.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

# DIV2K's 800 training images taken as 2040x1356 each, the shape of most of them (an estimate:
# the sizes vary a little).
DIV2K_TRAIN_PIXELS = 800 * 2040 * 1356


def smaps_rollup() -> dict[str, int]:
    """This process's RSS, PSS and USS in bytes, after the C allocator has returned its free
    memory (the decoding's temporary buffers) to the system."""
    ctypes.CDLL('libc.so.6').malloc_trim(0)
    fields = {}
    for line in Path('/proc/self/smaps_rollup').read_text().splitlines()[1:]:
        name, value = line.split(':', 1)
        fields[name] = int(value.split()[0]) * 1024
    return {'rss': fields['Rss'], 'pss': fields['Pss'],
            'uss': fields['Private_Clean'] + fields['Private_Dirty']}


def make_images(folder: Path, n: int, width: int, height: int) -> None:
    """Smooth gradients with mild noise: decoded sizes are all that matter here."""
    import numpy as np
    from PIL import Image
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = np.linspace(0, 1, height)[:, None, None]
    cols = np.linspace(0, 1, width)[None, :, None]
    for i in range(n):
        base = 200 * (rows * rng.random(3) + cols * rng.random(3)) / 2 + 20
        noise = rng.integers(0, 8, (height, width, 3))
        Image.fromarray((base + noise).astype(np.uint8)).save(folder / f'{i:04d}.png',
                                                              compress_level=1)


def worker(folder: str, out: str) -> None:
    """One torchrun process: build the dataset, read every item, report the growth."""
    import torch
    import torch.distributed as dist

    from liif_core.data import ImageFolder
    torch.set_num_threads(1)
    dist.init_process_group('gloo')
    rank = dist.get_rank()
    before = smaps_rollup()
    data = ImageFolder(folder, cache='in_memory')
    for i in range(len(data)):
        data[i]
    dist.barrier()  # every process holds its images now
    after = smaps_rollup()
    dist.barrier()  # no process exits (and frees shared pages) before all have measured
    growth = {k: after[k] - before[k] for k in after}
    Path(out, f'rank{rank}.json').write_text(json.dumps(growth))
    dist.destroy_process_group()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--images', type=int, default=8, help='number of images (default 8)')
    parser.add_argument('--size', default='2040x1356', help='WxH of each image')
    parser.add_argument('--nproc', type=int, default=2, help='torchrun processes')
    parser.add_argument('--worker', nargs=2, metavar=('FOLDER', 'OUT'), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker)
        return 0
    width, height = map(int, args.size.split('x'))
    with tempfile.TemporaryDirectory() as tmp:
        folder, out = Path(tmp, 'images'), Path(tmp, 'out')
        out.mkdir()
        make_images(folder, args.images, width, height)
        subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone',
                        f'--nproc_per_node={args.nproc}', __file__, '--worker', str(folder),
                        str(out)], check=True, env=dict(os.environ, OMP_NUM_THREADS='1'))
        ranks = [json.loads((out / f'rank{r}.json').read_text()) for r in range(args.nproc)]
    image_bytes = args.images * width * height * 3  # decoded 8-bit RGB
    pss = sum(r['pss'] for r in ranks) / len(ranks)
    report = {
        'images': args.images, 'size': args.size, 'processes': args.nproc,
        'decoded_uint8_mib': image_bytes / 2**20,
        'per_process_mib': [{k: v / 2**20 for k, v in r.items()} for r in ranks],
        'div2k_train_pss_gib_per_process':
            pss / (args.images * width * height) * DIV2K_TRAIN_PIXELS / 2**30,
    }
    print(json.dumps(report, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
