"""Real pictures for the layout builders: Omniglot handwriting on CIFAR-10 photographs.

The paper datasets (Market-1501, CUHK-SYSU, tieredImageNet) cannot be downloaded here, so the
slow pipeline tests write their exact on-disk layouts from the real images in ``../shared/data``
(see its README), read with the package's own readers:

- Omniglot (Lake, Salakhutdinov, Tenenbaum, "Human-level concept learning through probabilistic
  program induction", Science 2015; ``images_background_small1/2`` merged once, they share 50
  characters, and ``images_evaluation``: 242 + 659 = 901 distinct characters, 20 drawers each).
  A character is an identity (re-ID, person search) or a class (few-shot); its 20 drawings by
  different people are the views.
- CIFAR-10 (Krizhevsky 2009), the 5,085-image training subset: one photograph, upscaled with PIL
  bilinear, is the background of each crop or scene.

A "person" is a light card with one drawing of its character in dark ink, pasted over the
photograph: the identity is in the real handwriting only (every card has the same colours), so a
model has to learn the character's shape across drawers, on cluttered real backgrounds. The card
design is ours. Everything is deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

from cirbench.data.cifar import read_cifar10
from cirbench.data.omniglot import load_set

OMNIGLOT_SETS = ("images_background_small1", "images_background_small2", "images_evaluation")
GLYPH = 64  # decoded glyph size (Lanczos from 105, cirbench.data.omniglot)
CARD, INK = 235.0, 20.0  # card and ink grey levels (ours)


@dataclass(frozen=True)
class Character:
    """One Omniglot character: ``alphabet``, ``key`` (Alphabet/characterNN) and its drawings
    (20, GLYPH, GLYPH) uint8, bright strokes on black as decoded by the package."""

    alphabet: str
    key: str
    drawings: np.ndarray


class RealImages:
    """The 901 distinct Omniglot characters (background sets first, in the readers' sorted
    class order) and the CIFAR-10 subset's training photographs, (N, 32, 32, 3) uint8."""

    def __init__(self, shared_data: Path) -> None:
        self.characters = load_characters(shared_data)
        cifar = read_cifar10(shared_data / "cifar10-subset" / "cifar-10-batches-py", "train")
        self.photos = cifar.images.permute(0, 2, 3, 1).numpy()

    def photo(self, index: int, width: int, height: int) -> np.ndarray:
        """Photograph ``index`` (modulo the subset size) resized to (height, width, 3)."""
        img = Image.fromarray(self.photos[index % len(self.photos)])
        return np.array(img.resize((width, height), Image.Resampling.BILINEAR), dtype=np.uint8)

    def paste(
        self,
        canvas: np.ndarray,
        box: tuple[int, int, int, int],
        char: int,
        drawer: int,
        stretch: bool = False,
    ) -> None:
        """Draw drawing ``drawer`` of character ``char`` on a card filling ``box`` = (x, y, w, h)
        of ``canvas`` (H, W, 3) uint8, in place; the glyph is square and centred, or stretched
        over the whole card."""
        x, y, w, h = box
        gw, gh = (w, h) if stretch else (min(w, h), min(w, h))
        glyph = Image.fromarray(self.characters[char].drawings[drawer % 20])
        ink = np.asarray(glyph.resize((gw, gh), Image.Resampling.BILINEAR)) / 255.0
        card = np.full((h, w), CARD)
        top, left = (h - gh) // 2, (w - gw) // 2
        card[top : top + gh, left : left + gw] = CARD * (1 - ink) + INK * ink
        canvas[y : y + h, x : x + w] = np.round(card)[..., None].astype(np.uint8)

    def crop(self, char: int, drawer: int, photo: int, width: int, height: int) -> np.ndarray:
        """A (height, width, 3) picture: photograph ``photo`` with a card covering the middle
        (7/8 of the width, square, in the upper half for a tall crop: a torso)."""
        canvas = self.photo(photo, width, height)
        side = min(width, height) * 7 // 8
        top = (height - side) // 2 if height <= width else height // 4 - side // 4
        self.paste(canvas, ((width - side) // 2, top, side, side), char, drawer)
        return canvas


@cache
def load_characters(shared_data: Path) -> tuple[Character, ...]:
    folder = shared_data / "omniglot"
    seen: set[str] = set()
    out: list[Character] = []
    for name in OMNIGLOT_SETS:
        data = load_set(folder, name, GLYPH)
        for label, key in enumerate(data.classes):
            if key in seen:  # the 50 characters shared by the two small background sets
                continue
            seen.add(key)
            drawings = data.images[data.labels == label]
            out.append(Character(key.split("/")[0], key, drawings))
    return tuple(out)
