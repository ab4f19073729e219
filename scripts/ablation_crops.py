"""Save the ablation chapter's side-by-side crops: one 240x240 region of a stand-in validation
photo, downsampled by 12 and 30 and brought back by each ablation run of seed 0
(book/results/ablation/crops/<variant>-x<scale>.png, 8-bit PNG), from the shipped float16
weights of each run (book/results/ablation/weights/). The chapter computes the ground truth and
bicubic itself from the photo.

    python scripts/ablation_crops.py      (after scripts/ablation.sh)
"""
from pathlib import Path

import torch
from PIL import Image

from liif_core import load_model
from liif_core.ablation import VARIANTS
from liif_core.evaluate import load_images, make_test_pair
from liif_core.render import render
from liif_core.teaching import DETAIL_COLS, DETAIL_ROWS

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / 'book' / 'results' / 'ablation'
OUT = RESULTS / 'crops'
SCALES = (12, 30)
PHOTO = 0  # the region (DETAIL_ROWS, DETAIL_COLS) is in the first validation photo


def main() -> None:
    torch.set_num_threads(1)
    name, photo = load_images(ROOT / 'data' / 'standin' / 'valid')[PHOTO]
    region = photo[:, DETAIL_ROWS, DETAIL_COLS]
    OUT.mkdir(parents=True, exist_ok=True)
    for variant in VARIANTS:
        model = load_model(RESULTS / 'weights' / f'{variant}-seed0.pth')
        for scale in SCALES:
            lr, hr = make_test_pair(region, scale)
            pred = render(model, lr, hr.shape[-2:]).permute(1, 2, 0)  # (H, W, 3)
            pixels = (pred * 255).round().byte().numpy()
            Image.fromarray(pixels).save(OUT / f'{variant}-x{scale}.png')
    print(f'{name}: crops in {OUT}')


if __name__ == '__main__':
    main()
