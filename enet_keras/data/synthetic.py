"""A synthetic road-scene dataset drawn with numpy: 8 classes plus an ignored ego-vehicle hood.

No download, deterministic from a seed, and fast (about 10-20 ms for a 360x480 scene on one CPU
core), so a small ENet can be trained and checked end to end in minutes. Each scene has a sky
gradient, a row of buildings with windows, a road in perspective with lane marks between two
tiled sidewalks, then trees, poles, pedestrians and cars placed on the ground and drawn far to
near (so near objects occlude far ones), sometimes an ego-vehicle hood (ignored), and finally
per-class texture, smooth shading, a global colour cast and pixel noise. Class colours vary from
scene to scene and overlap (grey cars, grey poles, grey road), so the network has to use shape and
context as well as colour.
"""

import numpy as np
import tensorflow as tf
from PIL import Image

from enet_keras.data.source import SPLITS, Source, int_option

SYNTHETIC_CLASSES = (
    "sky", "building", "road", "sidewalk", "vegetation", "car", "pedestrian", "pole",
)
# Label colours for drawing (Cityscapes' colours for the same classes), not image colours.
SYNTHETIC_PALETTE = (
    (70, 130, 180), (70, 70, 70), (128, 64, 128), (244, 35, 232), (107, 142, 35), (0, 0, 142),
    (220, 20, 60), (153, 153, 153),
)
SYNTHETIC_IGNORE_LABEL = 255
DEFAULT_NUM_EXAMPLES = {"train": 200, "val": 50, "test": 50}
SKY, BUILDING, ROAD, SIDEWALK, VEGETATION, CAR, PEDESTRIAN, POLE = range(8)
_SPLIT_INDEX = {"train": 0, "val": 1, "test": 2}
# Texture strength per class id (ignore -> last entry used through a 256 table).
_TEXTURE = np.full(256, 6.0, np.float32)
_TEXTURE[:8] = (3.0, 7.0, 11.0, 7.0, 26.0, 4.0, 7.0, 4.0)
_BUILDING_COLORS = ((150, 100, 80), (185, 175, 155), (125, 125, 135), (205, 185, 140),
                    (110, 75, 65), (170, 140, 120))
_CAR_COLORS = ((180, 30, 30), (30, 50, 160), (220, 220, 225), (30, 30, 35), (160, 165, 170),
               (220, 190, 40), (30, 90, 50))
_CLOTHES = ((30, 35, 80), (25, 25, 25), (170, 30, 40), (110, 110, 110), (40, 100, 60),
            (120, 80, 50), (200, 200, 190))


class _Canvas:
    """Label and float image painted together, shapes clipped to the frame."""

    def __init__(self, height, width):
        self.h, self.w = height, width
        self.label = np.zeros((height, width), np.uint8)
        self.image = np.zeros((height, width, 3), np.float32)

    def _window(self, y0, y1, x0, x1):
        y0, y1 = max(int(y0), 0), min(int(np.ceil(y1)), self.h)
        x0, x1 = max(int(x0), 0), min(int(np.ceil(x1)), self.w)
        return (y0, y1, x0, x1) if y0 < y1 and x0 < x1 else None

    def paint(self, win, mask, cls, color):
        y0, y1, x0, x1 = win
        lab, img = self.label[y0:y1, x0:x1], self.image[y0:y1, x0:x1]
        if mask is None:
            lab[...] = cls
            img[...] = color
        else:
            lab[mask] = cls
            img[mask] = color

    def rect(self, y0, y1, x0, x1, cls, color):
        win = self._window(y0, y1, x0, x1)
        if win:
            self.paint(win, None, cls, color)

    def ellipse(self, cy, cx, ry, rx, cls, color):
        win = self._window(cy - ry, cy + ry + 1, cx - rx, cx + rx + 1)
        if win:
            y = (np.arange(win[0], win[1], dtype=np.float32)[:, None] - cy) / max(ry, 0.5)
            x = (np.arange(win[2], win[3], dtype=np.float32)[None, :] - cx) / max(rx, 0.5)
            self.paint(win, y * y + x * x <= 1.0, cls, color)


def _jitter(rng, color, amount):
    return np.clip(np.asarray(color, np.float32) + rng.uniform(-amount, amount, 3), 0, 255)


def _smooth_noise(rng, height, width, cell):
    small = rng.standard_normal((height // cell + 2, width // cell + 2)).astype(np.float32)
    big = Image.fromarray(small, "F").resize(
        ((width // cell + 2) * cell, (height // cell + 2) * cell), Image.BILINEAR)
    return np.asarray(big)[:height, :width]


def render_scene(index, split="train", height=360, width=480, seed=0):
    """Draws one synthetic road scene.

    Args:
        index: int. Example index; with `split` and `seed` it fixes the scene.
        split: str. "train", "val" or "test"; each split draws different scenes.
            Defaults to "train".
        height: int. Image height in pixels. Defaults to 360.
        width: int. Image width in pixels. Defaults to 480.
        seed: int. Dataset seed. Defaults to 0.

    Returns:
        `(image uint8 [height, width, 3], label uint8 [height, width])`; label ids index
        `SYNTHETIC_CLASSES`, 255 marks the ignored ego-vehicle hood.

    Example:

    >>> image, label = render_scene(0, "train", 36, 48)
    >>> image.shape, label.shape, int(label.max()) < 8 or int(label.max()) == 255
    ((36, 48, 3), (36, 48), True)
    """
    rng = np.random.default_rng([int(seed), _SPLIT_INDEX[split], int(index)])
    H, W = int(height), int(width)
    c = _Canvas(H, W)
    hz = int(H * rng.uniform(0.36, 0.5))  # horizon row
    vx = W * rng.uniform(0.35, 0.65)  # vanishing point column

    # Sky: vertical gradient.
    top = np.array([rng.uniform(50, 110), rng.uniform(100, 160), rng.uniform(170, 240)],
                   np.float32)
    bottom = np.clip(top + rng.uniform([40, 30, 5], [90, 70, 25]), 0, 255)
    t = np.linspace(0, 1, max(hz, 1), dtype=np.float32)[:, None]
    c.label[:hz] = SKY
    c.image[:hz] = (top * (1 - t) + bottom * t)[:, None, :]

    # Buildings along the skyline, down to the bottom (the ground is drawn over them).
    x = -rng.uniform(0, 0.1) * W
    while x < W:
        bw = rng.uniform(0.08, 0.3) * W
        if rng.uniform() < 0.15:  # a gap: a hedge in front of the sky
            hedge = hz - rng.uniform(0.02, 0.08) * H
            c.rect(hedge, H, x, x + bw, VEGETATION, _jitter(rng, (50, 110, 40), 20))
        else:
            y0 = hz - rng.uniform(0.08, 0.45) * H
            color = _jitter(rng, _BUILDING_COLORS[rng.integers(len(_BUILDING_COLORS))], 20)
            c.rect(y0, H, x, x + bw, BUILDING, color)
            win = c._window(y0 + 4, hz, x + 3, x + bw - 3)
            if win:  # windows: a grid of dark glass, still "building"
                sy, sx = rng.uniform(10, 24) * H / 360, rng.uniform(10, 24) * W / 480
                yy = np.arange(win[0], win[1])[:, None] - win[0]
                xx = np.arange(win[2], win[3])[None, :] - win[2]
                mask = ((yy % sy) < 0.55 * sy) & ((xx % sx) < 0.55 * sx)
                c.paint(win, mask, BUILDING, _jitter(rng, (50, 65, 90), 20))
        x += bw

    # Ground: sidewalk band between two outer lines, road between the road edges.
    rows = np.arange(hz, H, dtype=np.float32)
    depth = (rows - hz + 1) / (H - hz)  # 0 at the horizon, 1 at the bottom row
    xl_b = W * rng.uniform(-0.3, 0.25)
    xr_b = W * rng.uniform(0.75, 1.3)
    sl_b = xl_b - W * rng.uniform(0.15, 0.6)
    sr_b = xr_b + W * rng.uniform(0.15, 0.6)

    def edge(bottom_x):
        return vx + depth * (bottom_x - vx)

    xl, xr, sl, sr = edge(xl_b), edge(xr_b), edge(sl_b), edge(sr_b)
    cols = np.arange(W, dtype=np.float32)[None, :]
    ground = c.label[hz:], c.image[hz:]
    side = (cols >= sl[:, None]) & (cols < sr[:, None])
    ground[0][side] = SIDEWALK
    ground[1][side] = _jitter(rng, (185, 165, 150), 25)
    tile = rng.uniform(10, 20) * W / 480
    seams = side & (((cols % tile) < 1.2) | ((rows[:, None] % (tile * 0.6)) < 1.2))
    ground[1][seams] *= 0.8
    road = (cols >= xl[:, None]) & (cols < xr[:, None])
    ground[0][road] = ROAD
    ground[1][road] = _jitter(rng, (95, 95, 102), 20)
    center = edge((xl_b + xr_b) / 2)
    half = np.maximum(0.5, 0.008 * W * depth)[:, None]
    dashes = ((1.0 / depth) * 2.0 % 2.0 < 1.0)[:, None]
    marks = (np.abs(cols - center[:, None]) < half) & dashes & road
    for e in (xl, xr):
        marks |= (np.abs(cols - (e[:, None] + np.sign(vx - e[:, None]) * 3 * half)) < half) & road
    ground[1][marks] = _jitter(rng, (225, 225, 215), 15)

    # Objects on the ground, drawn far to near.
    objects = []
    for kind, n_max in (("tree", 4), ("pole", 3), ("pedestrian", 4), ("car", 5)):
        for _ in range(rng.integers(0, n_max + 1)):
            d = rng.uniform(0.08, 1.0) if kind == "car" else rng.uniform(0.06, 0.75)
            objects.append((d, kind))
    objects.sort(key=lambda o: o[0])
    for d, kind in objects:
        yb = hz + d * (H - hz)
        s = d * H / 360.0  # pixels per "unit" at this depth
        left_side = rng.uniform() < 0.5
        lo, hi = (sl_b, xl_b) if left_side else (xr_b, sr_b)
        if kind == "car" or (kind == "pedestrian" and rng.uniform() < 0.2):
            lo, hi = xl_b, xr_b
        xb = vx + d * (rng.uniform(lo, hi) - vx)
        if kind == "tree":
            th, tw = 120 * s * rng.uniform(0.8, 1.2), max(2.0, 7 * s)
            c.rect(yb - th, yb, xb - tw / 2, xb + tw / 2, VEGETATION, _jitter(rng, (85, 60, 40), 15))
            rx = 45 * s * rng.uniform(0.7, 1.3)
            c.ellipse(yb - th - 0.6 * rx, xb, rx * rng.uniform(0.8, 1.3), rx, VEGETATION,
                      _jitter(rng, (55, 115, 40), 25))
        elif kind == "pole":
            ph, pw = 220 * s * rng.uniform(0.8, 1.2), max(1.5, 5 * s)
            c.rect(yb - ph, yb, xb - pw / 2, xb + pw / 2, POLE, _jitter(rng, (120, 120, 120), 35))
            if rng.uniform() < 0.5:  # a sign plate on the pole
                c.rect(yb - ph, yb - ph + 12 * s, xb - 8 * s, xb + 8 * s, POLE,
                       _jitter(rng, (140, 140, 150), 60))
        elif kind == "pedestrian":
            ph = 150 * s * rng.uniform(0.85, 1.1)
            pw = 0.28 * ph
            legs = _jitter(rng, _CLOTHES[rng.integers(len(_CLOTHES))], 20)
            c.rect(yb - 0.45 * ph, yb, xb - 0.35 * pw, xb - 0.05 * pw, PEDESTRIAN, legs)
            c.rect(yb - 0.45 * ph, yb, xb + 0.05 * pw, xb + 0.35 * pw, PEDESTRIAN, legs)
            c.ellipse(yb - 0.65 * ph, xb, 0.22 * ph, 0.5 * pw, PEDESTRIAN,
                      _jitter(rng, _CLOTHES[rng.integers(len(_CLOTHES))], 20))
            c.ellipse(yb - 0.91 * ph, xb, 0.08 * ph, 0.2 * pw, PEDESTRIAN,
                      _jitter(rng, (190, 145, 120), 35))
        else:
            cw = 150 * s * rng.uniform(0.85, 1.15) * W / H * 0.75
            ch = 0.7 * cw
            body = _jitter(rng, _CAR_COLORS[rng.integers(len(_CAR_COLORS))], 20)
            c.rect(yb - 0.62 * ch, yb - 0.1 * ch, xb - cw / 2, xb + cw / 2, CAR, body)
            c.rect(yb - ch, yb - 0.6 * ch, xb - 0.35 * cw, xb + 0.35 * cw, CAR, body * 0.9)
            c.rect(yb - 0.93 * ch, yb - 0.64 * ch, xb - 0.3 * cw, xb + 0.3 * cw, CAR,
                   _jitter(rng, (45, 55, 70), 15))
            for wx in (xb - 0.32 * cw, xb + 0.32 * cw):
                c.ellipse(yb - 0.1 * ch, wx, 0.12 * ch, 0.1 * cw, CAR, (20.0, 20.0, 20.0))
            c.rect(yb - 0.45 * ch, yb - 0.38 * ch, xb - 0.48 * cw, xb - 0.38 * cw, CAR,
                   (230.0, 210.0, 150.0))  # lights
            c.rect(yb - 0.45 * ch, yb - 0.38 * ch, xb + 0.38 * cw, xb + 0.48 * cw, CAR,
                   (230.0, 210.0, 150.0))

    # The ego vehicle's hood: not a class, ignored.
    if rng.uniform() < 0.35:
        c.ellipse(H * 1.08, W * rng.uniform(0.4, 0.6), H * rng.uniform(0.12, 0.2), W * 0.75,
                  SYNTHETIC_IGNORE_LABEL, _jitter(rng, (35, 35, 40), 15))

    # Texture per class, smooth shading, colour cast, pixel noise.
    fine = rng.standard_normal((H, W), dtype=np.float32)
    blobs = _smooth_noise(rng, H, W, max(2, W // 160))
    texture = _TEXTURE[c.label] * (0.5 * fine + blobs)
    shade = 1.0 + 0.12 * _smooth_noise(rng, H, W, max(8, W // 8))
    cast = rng.uniform(0.9, 1.1, 3).astype(np.float32) * rng.uniform(0.7, 1.15)
    image = (c.image + texture[..., None]) * (shade[..., None] * cast)
    image += rng.standard_normal((H, W, 3), dtype=np.float32) * rng.uniform(2.0, 7.0)
    return np.clip(image, 0, 255).astype(np.uint8), c.label


def synthetic_source(split, data_dir=None, num_examples=None, height=360, width=480, seed=0):
    """The synthetic road-scene dataset (see the module docstring), drawn lazily in `tf.data`.

    Args:
        split: str. "train", "val" or "test"; each split has its own scenes.
        data_dir: None. Not used (accepted so every source has the same call).
        num_examples: int or None. Number of scenes. Defaults to None: 200 for train, 50 for
            val and test.
        height: int. Image height. Defaults to 360.
        width: int. Image width. Defaults to 480.
        seed: int. Dataset seed; the same seed gives the same scenes. Defaults to 0.

    Returns:
        A `Source` with the 8 classes of `SYNTHETIC_CLASSES` and `ignore_label=255`.

    Raises:
        ValueError: on a bad split or size.

    Example:

    >>> src = synthetic_source("val", num_examples=3, height=36, width=48)
    >>> [tuple(x.shape) for x in next(iter(src.dataset()))]
    [(36, 48, 3), (36, 48)]
    """
    if split not in SPLITS:
        raise ValueError(f"synthetic split must be one of {SPLITS}. Received: split={split!r}")
    n = DEFAULT_NUM_EXAMPLES[split] if num_examples is None else \
        int_option("synthetic", "num_examples", num_examples, least=1)
    height = int_option("synthetic", "height", height, least=8)
    width = int_option("synthetic", "width", width, least=8)
    seed = int_option("synthetic", "seed", seed)

    def draw(index):
        return render_scene(int(index), split, height, width, seed)

    def make_dataset(shuffle_seed):
        ds = tf.data.Dataset.range(n)
        if shuffle_seed is not None:
            ds = ds.shuffle(n, seed=shuffle_seed, reshuffle_each_iteration=True)

        def load(index):
            image, label = tf.numpy_function(draw, [index], (tf.uint8, tf.uint8), stateful=False)
            return tf.ensure_shape(image, [height, width, 3]), tf.ensure_shape(label, [height, width])

        return ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    return Source(
        name="synthetic", split=split, num_classes=len(SYNTHETIC_CLASSES),
        ignore_label=SYNTHETIC_IGNORE_LABEL, class_names=SYNTHETIC_CLASSES,
        palette=SYNTHETIC_PALETTE, num_examples=n, make_dataset=make_dataset, data_dir=None,
        options={"num_examples": n, "height": height, "width": width, "seed": seed},
    )
