"""How well a picture shows a shape: the demo's samples against each shape's mask.

A sample of "a yellow triangle on a green background" is thresholded into the pixels nearer the
shape's colour than the background's; each shape (circle, square, triangle, drawn as the demo's
dataset draws them) is then fitted over sizes and places, and its best intersection over union
with the thresholded pixels is that shape's score. A recognisable triangle scores highest as a
triangle; an 8x8 mosaic's blob does not.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from webapp.trainer.demo import COLOURS, SHAPES, IMAGE_SIZE

SIZE = IMAGE_SIZE


def caption_parts(prompt: str) -> tuple[str, str, str]:
    """"a red circle on a blue background" -> ("circle", "red", "blue")."""
    words = prompt.split()
    return words[2], words[1], words[5]


def thresholded(image: Image.Image, colour: str, background: str) -> np.ndarray:
    """The pixels nearer the shape's colour than the background's (bool, SIZE x SIZE)."""
    pixels = np.asarray(image.convert("RGB").resize((SIZE, SIZE), Image.BOX), dtype=float)
    near_shape = np.linalg.norm(pixels - COLOURS[colour], axis=2)
    near_background = np.linalg.norm(pixels - COLOURS[background], axis=2)
    return near_shape < near_background


def template(shape: str, extent: int) -> np.ndarray:
    """The shape filling an extent x extent box at the top left, as demo.draw_shape draws it."""
    image = Image.new("1", (SIZE, SIZE), 0)
    draw, box = ImageDraw.Draw(image), (0, 0, extent, extent)
    if shape == "circle":
        draw.ellipse(box, fill=1)
    elif shape == "square":
        draw.rectangle(box, fill=1)
    else:
        draw.polygon([(extent // 2, 0), (0, extent), (extent, extent)], fill=1)
    return np.asarray(image, dtype=bool)


def best_iou(mask: np.ndarray, shape: str) -> float:
    """The shape's best intersection over union with the mask, over sizes and places (2 px apart)."""
    best, area = 0.0, int(mask.sum())
    for extent in range(12, SIZE - 2, 2):
        drawn = template(shape, extent)
        filled = int(drawn.sum())
        for top in range(0, SIZE - extent, 2):
            for left in range(0, SIZE - extent, 2):
                overlap = int(mask[top:, left:][drawn[:SIZE - top, :SIZE - left]].sum())
                best = max(best, overlap / (area + filled - overlap))
    return best


def shape_scores(image: Image.Image, prompt: str) -> dict[str, float]:
    """shape -> its best IoU with the sample's thresholded shape."""
    _, colour, background = caption_parts(prompt)
    mask = thresholded(image, colour, background)
    return {shape: best_iou(mask, shape) for shape in SHAPES}
