"""An offline stand-in for VOC2012: synthetic images in the VOC layout.

`make_synthetic_voc` writes JPEGImages, palette-PNG SegmentationClass
labels (255 = void band along every outline, as in VOC) and the
ImageSets/Segmentation split lists, so the d2l loaders read it unchanged.
Each class has its own shape and colour/texture, so a small FCN trained
from scratch on a CPU can learn to tell them apart in minutes.
"""
import colorsys
import os
from collections import namedtuple

import numpy as onp
from PIL import Image, ImageDraw, ImageFilter
from tqdm import tqdm

from ..d2l.data import VOC_CLASSES
from ..errors import FCNError
from .files import (atomic_path, load_json, make_folder, save_json,
                    write_text)
from .labels import IGNORE_LABEL, save_label_png

VERSION = 1
# aeroplane, bus, cat, dog, person
DEFAULT_CLASSES = (1, 6, 8, 12, 15)
# Drawn uniformly, so repeats are weights: like VOC, about 3/4 of the
# images are at least 320x480 and a few are smaller than 160x224.
DEFAULT_SIZES = ((375, 500),) * 5 + (
    (333, 500), (353, 500), (366, 500), (320, 480),
    (500, 375), (240, 320), (150, 200))
BAND_WIDTH = 4  # px of void along an outline, half inside, half outside

# hue in degrees; aspect = width / height of the unit frame; max_rot in
# degrees. Hues are far apart so colour alone nearly separates classes.
Style = namedtuple('Style', 'shape texture hue sat val aspect max_rot')
STYLES = {
    1: Style('plane', 'smooth', 210, 0.55, 0.95, 1.1, 35),
    6: Style('bus', 'windows', 52, 0.9, 0.95, 1.7, 8),
    8: Style('cat', 'stripes', 22, 0.85, 0.92, 1.4, 15),
    12: Style('dog', 'spots', 130, 0.6, 0.7, 1.4, 15),
    15: Style('person', 'two_tone', 330, 0.7, 0.9, 0.5, 8),
}


def ellipse(cx, cy, rx, ry, n=32):
    """A polygon approximating an ellipse, as an (n, 2) array."""
    t = onp.linspace(0, 2 * onp.pi, n, endpoint=False)
    return onp.stack([cx + rx * onp.cos(t), cy + ry * onp.sin(t)], 1)


def mirror_y(poly):
    return [(x, -y) for x, y in poly]


def shape_polygons(shape):
    """The polygons of a shape in its unit frame, [-1, 1]^2, y down."""
    wing = [(0.25, -0.1), (-0.2, -0.95), (-0.42, -0.95), (-0.15, -0.1)]
    tail = [(-0.7, -0.05), (-0.92, -0.42), (-1.0, -0.42), (-0.92, 0)]
    shapes = {
        'plane': [ellipse(0, 0, 1, 0.15), wing, mirror_y(wing),
                  tail, mirror_y(tail)],
        'bus': [[(-1, -0.75), (0.92, -0.75), (1, -0.55), (1, 0.6),
                 (-1, 0.6)], ellipse(-0.6, 0.65, 0.22, 0.3),
                ellipse(0.6, 0.65, 0.22, 0.3)],
        'cat': [ellipse(0.15, 0.3, 0.7, 0.42), ellipse(-0.62, -0.3, 0.33,
                0.36), [(-0.95, -0.45), (-0.88, -1), (-0.65, -0.6)],
                [(-0.58, -0.62), (-0.38, -1), (-0.32, -0.45)],
                [(0.75, 0.3), (1, -0.7), (0.9, -0.75), (0.68, 0.1)]],
        'dog': [ellipse(0.1, 0.05, 0.7, 0.35), ellipse(-0.68, -0.4, 0.3,
                0.26), ellipse(-0.95, -0.3, 0.12, 0.1),
                ellipse(-0.5, -0.3, 0.1, 0.3)] + [
                [(x, 0.1), (x + 0.2, 0.1), (x + 0.2, 1), (x, 1)]
                for x in (-0.5, -0.2, 0.35, 0.6)] + [
                [(0.75, -0.05), (1, -0.6), (0.92, -0.65), (0.7, -0.2)]],
        'person': [ellipse(0, -0.8, 0.42, 0.2),
                   [(-0.7, -0.58), (0.7, -0.58), (0.55, 0.15),
                    (-0.55, 0.15)],
                   [(-0.7, -0.58), (-0.45, -0.5), (-0.85, 0.1),
                    (-1, 0.05)],
                   [(0.7, -0.58), (0.45, -0.5), (0.85, 0.1), (1, 0.05)],
                   [(-0.55, 0.1), (-0.05, 0.1), (-0.15, 1), (-0.55, 1)],
                   [(0.05, 0.1), (0.55, 0.1), (0.55, 1), (0.15, 1)]],
    }
    return [onp.asarray(p, dtype=onp.float64) for p in shapes[shape]]


def class_style(cls):
    """The style of VOC class `cls`; classes without one borrow a shape."""
    if cls in STYLES:
        return STYLES[cls]
    base = STYLES[DEFAULT_CLASSES[cls % len(DEFAULT_CLASSES)]]
    return base._replace(hue=(cls * 137.5) % 360)


def texture_shade(texture, u, v, rng):
    """A brightness factor over the object's unit-frame coordinates."""
    if texture == 'windows':
        windows = (v > -0.55) & (v < -0.1) & ((u * 3 + 10) % 1 < 0.7)
        return onp.where(windows | (v > 0.45), 0.3, 1.0)
    if texture == 'stripes':
        freq, phase = rng.uniform(14, 22), rng.uniform(0, 2 * onp.pi)
        return onp.where(onp.sin(u * freq + phase) > 0.3, 0.5, 1.0)
    if texture == 'spots':
        shade = onp.ones_like(u)
        for cu, cv, r in rng.uniform((-1, -1, 0.1), (1, 1, 0.25), (6, 3)):
            shade[(u - cu) ** 2 + (v - cv) ** 2 < r * r] = 0.4
        return shade
    if texture == 'two_tone':
        return onp.where(v > 0.12, 0.45, 1.0)
    return 1.0 - 0.15 * v  # smooth, lit from above


def hsv_rgb(hue, sat, val):
    """HSV (hue in degrees, 0..1 otherwise) to an RGB array in 0..255."""
    rgb = colorsys.hsv_to_rgb((hue % 360) / 360, onp.clip(sat, 0, 1),
                              onp.clip(val, 0, 1))
    return 255 * onp.asarray(rgb, dtype=onp.float32)


def smooth_noise(rng, size, grid, channels=3):
    """Low-frequency noise in [-1, 1]: a random grid resized bicubically."""
    h, w = size
    layers = [Image.fromarray(rng.uniform(0, 255, grid).astype(onp.uint8))
              .resize((w, h), Image.BICUBIC) for _ in range(channels)]
    return onp.stack([onp.asarray(x, onp.float32) for x in layers], 2) \
        / 127.5 - 1


def draw_background(rng, size):
    """A smooth, low-saturation random field, maybe split by a horizon."""
    h, w = size
    img = onp.empty((h, w, 3), onp.float32)
    img[:] = hsv_rgb(rng.uniform(0, 360), rng.uniform(0, 0.18),
                     rng.uniform(0.35, 0.8))
    if rng.random() < 0.5:
        horizon = int(h * rng.uniform(0.3, 0.7))
        img[horizon:] = hsv_rgb(rng.uniform(0, 360), rng.uniform(0, 0.18),
                                rng.uniform(0.25, 0.7))
    grid = tuple(rng.integers(3, 9, 2))
    img += 40 * smooth_noise(rng, size, grid, 1)
    img += 12 * smooth_noise(rng, size, (h // 8, w // 8))
    return img


def place_object(rng, size, style):
    """Centre, half extents (hw, hh), angle and flip of one object."""
    h, w = size
    extent = min(h, w) * rng.uniform(0.45, 0.85)  # the longer side
    aspect = style.aspect * rng.uniform(0.85, 1.15)
    hw, hh = (extent / 2, extent / 2 / aspect) if aspect > 1 else (
        extent / 2 * aspect, extent / 2)
    cx, cy = rng.uniform(0.15, 0.85) * w, rng.uniform(0.15, 0.85) * h
    angle = onp.deg2rad(rng.uniform(-style.max_rot, style.max_rot))
    flip = rng.choice((-1.0, 1.0))
    return cx, cy, hw * flip, hh, angle


def draw_object(rng, img, size, style):
    """Paint one object into `img` (in place); return its (H, W) mask."""
    h, w = size
    cx, cy, hw, hh, angle = place_object(rng, size, style)
    c, s = onp.cos(angle), onp.sin(angle)
    canvas = Image.new('L', (w, h), 0)
    draw = ImageDraw.Draw(canvas)
    for poly in shape_polygons(style.shape):
        x, y = poly[:, 0] * hw, poly[:, 1] * hh
        draw.polygon(list(zip(cx + c * x - s * y, cy + s * x + c * y)),
                     fill=255)
    mask = onp.asarray(canvas) > 127
    if not mask.any():
        return mask
    x0, y0, x1, y1 = canvas.getbbox()
    ys, xs = onp.mgrid[y0:y1, x0:x1].astype(onp.float32)
    dx, dy = xs - cx, ys - cy
    u, v = (c * dx + s * dy) / hw, (c * dy - s * dx) / hh
    colour = hsv_rgb(style.hue + rng.uniform(-10, 10),
                     style.sat + rng.uniform(-0.1, 0.1),
                     style.val + rng.uniform(-0.1, 0.05))
    shade = texture_shade(style.texture, u, v, rng)[..., None]
    # Softened edges, so the network cannot key on aliasing alone.
    alpha = onp.asarray(canvas.crop((x0, y0, x1, y1)).filter(
        ImageFilter.GaussianBlur(0.7)), onp.float32)[..., None] / 255
    box = img[y0:y1, x0:x1]
    box[:] = box * (1 - alpha) + colour * shade * alpha
    return mask


def border_band(instances, width=BAND_WIDTH):
    """Pixels within `width` / 2 of a change in the (H, W) instance map."""
    img = Image.fromarray(instances.astype(onp.uint8))
    size = width + 1
    grown = onp.asarray(img.filter(ImageFilter.MaxFilter(size)))
    shrunk = onp.asarray(img.filter(ImageFilter.MinFilter(size)))
    return grown != shrunk


def make_example(rng, size, classes=DEFAULT_CLASSES):
    """One synthetic example: (PIL RGB image, (H, W) uint8 label).

    Draws 1 to 3 objects; later ones occlude earlier ones. Labels are
    class indices, 0 for background and 255 on the void band.
    """
    img = draw_background(rng, size)
    instances = onp.zeros(size, onp.uint8)
    drawn = [0]
    for k in range(1, rng.choice((1, 2, 3), p=(0.2, 0.4, 0.4)) + 1):
        cls = int(rng.choice(classes))
        instances[draw_object(rng, img, size, class_style(cls))] = k
        drawn.append(cls)
    label = onp.asarray(drawn, onp.uint8)[instances]
    label[border_band(instances)] = IGNORE_LABEL
    img += rng.normal(0, 5, img.shape).astype(onp.float32)
    pil = Image.fromarray(onp.clip(img, 0, 255).astype(onp.uint8), 'RGB')
    return pil.filter(ImageFilter.GaussianBlur(0.5)), label


def draw_size(rng, sizes=DEFAULT_SIZES):
    """One (height, width) from `sizes`, drawn uniformly."""
    return tuple(int(x) for x in sizes[rng.integers(len(sizes))])


def save_jpeg(img, path, quality=90):
    with atomic_path(path) as tmp:
        img.save(tmp, format='JPEG', quality=quality)


def write_split(out_dir, split, ids):
    write_text(''.join(f'{i}\n' for i in ids), os.path.join(
        out_dir, 'ImageSets', 'Segmentation', f'{split}.txt'))


def make_synthetic_voc(out_dir, num_train=200, num_val=50, seed=0,
                       classes=DEFAULT_CLASSES, sizes=DEFAULT_SIZES,
                       progress=True, binary=False):
    """Write a synthetic dataset in the VOC2012 layout to `out_dir`.

    Parameters
    ----------
    out_dir : str
        The folder to fill, like VOCdevkit/VOC2012.
    num_train, num_val : int
        Images in train.txt and val.txt (trainval.txt lists both).
    seed : int
        Image `i` depends only on (seed, i): the same seed gives
        byte-identical files and more images extend the same sequence.
    classes : tuple of int
        VOC class indices (1..20) the objects are drawn from.
    sizes : tuple of (int, int)
        (height, width) candidates, one drawn uniformly per image.
    progress : bool
        Show a progress bar.
    binary : bool
        Label every object 1 ('object', background 0) and write
        classes.txt: a binary dataset with its own class list.

    Returns
    -------
    str
        `out_dir`. synthetic.json, written last, records the parameters.
    """
    classes = tuple(int(c) for c in classes)
    if not classes or not all(0 < c < len(VOC_CLASSES) for c in classes):
        raise FCNError(f'classes must be VOC indices 1..20, not {classes}')
    ids = [f'synth_{i:06d}' for i in range(num_train + num_val)]
    for folder in ('JPEGImages', 'SegmentationClass'):  # fail before the bar
        make_folder(os.path.join(out_dir, folder))
    for i, name in enumerate(tqdm(ids, desc='synthetic VOC',
                                  disable=not progress)):
        rng = onp.random.default_rng([seed, i])
        img, label = make_example(rng, draw_size(rng, sizes), classes)
        if binary:
            label[(label != 0) & (label != IGNORE_LABEL)] = 1
        save_jpeg(img, os.path.join(out_dir, 'JPEGImages', f'{name}.jpg'))
        save_label_png(label, os.path.join(
            out_dir, 'SegmentationClass', f'{name}.png'))
    splits = {'train': ids[:num_train], 'val': ids[num_train:],
              'trainval': ids}
    for split, split_ids in splits.items():
        write_split(out_dir, split, split_ids)
    if binary:
        write_text('background\nobject\n',
                   os.path.join(out_dir, 'classes.txt'))
    save_json({'version': VERSION, 'seed': seed, 'num_train': num_train,
               'num_val': num_val, 'classes': list(classes),
               'class_names': [VOC_CLASSES[c] for c in classes],
               'sizes': [list(s) for s in sizes], 'binary': binary},
              os.path.join(out_dir, 'synthetic.json'))
    return out_dir


def synthetic_info(folder):
    """What synthetic.json records of a folder `make_synthetic_voc` wrote
    (seed, counts, the classes drawn and their names, ...), or None for
    any other folder."""
    path = os.path.join(folder, 'synthetic.json')
    return load_json(path) if os.path.isfile(path) else None
