"""What the book printed for the FCN chapter, edition by edition, and the
verdict on a run of the same recipe.

Each edition trains the chapter's net for 5 epochs, batch 32, on random
320x480 crops of VOC2012 from an ImageNet-pretrained backbone, and prints
its closing figures (:numref:`sec_fcn`; d2l-zh v1 section 9.10). Test
accuracy is measured on random crops of the validation images, so it
moves from run to run: across the book's own builds of the MXNet
notebook it lay between 0.784 and 0.855. That spread is the verdict's
yardstick; no build log of the PyTorch tab is kept, so its spread is the
MXNet builds' taken relative to its own printed figure (-0.067, +0.004
around 0.852): the same metric on the same crops of the same net, and
the two tabs printed nearly the same test accuracy (0.851, 0.852).
"""
import dataclasses
import re

# the MXNet notebook's builds: the lowest and highest test accuracy
MXNET_SPREAD = (0.784, 0.855)
MXNET_PRINTED_TEST_ACC = 0.851


@dataclasses.dataclass(frozen=True)
class Edition:
    """One edition's recipe and what the book printed for it."""
    name: str
    title: str
    code: str          # the book's functions that run it here
    printed: str       # the book's closing line, as printed
    source: str
    lr: float
    loss: str          # how the loss reaches the gradient
    backbone: str      # the ImageNet backbone the net starts from
    spread: tuple      # (low, high) test accuracy of the book's builds
    spread_source: str
    examples_per_sec: float = None  # the book's, on its devices
    devices: str = None
    epochs: int = 5
    batch_size: int = 32
    crop: tuple = (320, 480)
    wd: float = 1e-3

    @property
    def figures(self):
        """The printed closing figures: loss, train_acc, test_acc."""
        return parse_figures(self.printed)

    def recipe(self):
        """The numbers a run of this edition takes, as JSON holds them."""
        return {'epochs': self.epochs, 'batch_size': self.batch_size,
                'crop': list(self.crop), 'lr': self.lr, 'wd': self.wd,
                'loss': self.loss, 'backbone': self.backbone}


def shifted(spread, printed, to):
    """`spread` around `printed`, moved to be around `to` (rounded)."""
    return tuple(round(v - printed + to, 3) for v in spread)


EDITIONS = {
    'v1': Edition(
        'v1', 'd2l v1 (d2lzh 1.0.0, MXNet nd)', 'gluon_fcn.v1.train',
        'epoch 5, loss 0.3471, train acc 0.887, test acc 0.853, '
        'time 16.2 sec',
        'd2l-zh v1, section 9.10 (../shared/material/001)', 0.1,
        'softmax cross-entropy, mean over pixels, Trainer.step(batch)',
        'resnet18_v2 (Gluon model store)', MXNET_SPREAD,
        "the book's builds of the MXNet notebook"),
    'd2l': Edition(
        'd2l', 'd2l 2nd edition, MXNet tab (d2l 1.0.3)',
        'gluon_fcn.d2l.train_ch13',
        'loss 0.322, train acc 0.894, test acc 0.851',
        'd2l-en chapter_computer-vision/fcn, d2l 1.0.3', 0.1,
        'softmax cross-entropy, mean over pixels, Trainer.step(batch)',
        'resnet18_v2 (Gluon model store)', MXNET_SPREAD,
        "the book's builds of the MXNet notebook", 132.1,
        '[gpu(0), gpu(1)]'),
    'pytorch': Edition(
        'pytorch', 'd2l 2nd edition, PyTorch tab (d2l 1.0.3)',
        'gluon_fcn.compare.chapter.train_ch13 (the port)',
        'loss 0.449, train acc 0.861, test acc 0.852',
        'd2l-en chapter_computer-vision/fcn, PyTorch tab, d2l 1.0.3', 0.001,
        'cross-entropy, mean over pixels, summed over the batch '
        '(l.sum().backward())', 'resnet18 (torchvision, '
        'resnet18-f37072fd.pth)',
        shifted(MXNET_SPREAD, MXNET_PRINTED_TEST_ACC, 0.852),
        "the MXNet builds' spread around the PyTorch tab's 0.852 (no "
        'build log of the PyTorch tab)', 226.7, '2 GPUs'),
}

FIGURE = re.compile(r'(?P<key>loss|train acc|test acc|time)\s*[:=]?\s*'
                    r'(?P<value>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?'
                    r'|nan|inf)', re.I)
EPOCH = re.compile(r'\bepoch\s*(\d+)\b', re.I)


def parse_figures(line):
    """{'loss', 'train_acc', 'test_acc'} (and 'epoch', 'seconds' where
    the line has them) of a line the book's training prints, e.g.
    'epoch 5, loss 0.3471, train acc 0.887, test acc 0.853, time 16.2
    sec' or 'loss 0.322, train acc 0.894, test acc 0.851'; None for a
    line without all three."""
    found = {}
    for m in FIGURE.finditer(line):
        key = m.group('key').lower().replace(' ', '_')
        found.setdefault('seconds' if key == 'time' else key,
                         float(m.group('value')))
    if not {'loss', 'train_acc', 'test_acc'} <= set(found):
        return None
    epoch = EPOCH.search(line)
    if epoch:
        found['epoch'] = int(epoch.group(1))
    return found


@dataclasses.dataclass(frozen=True)
class Verdict:
    """Whether a run's final test accuracy is the book's."""
    edition: str
    test_acc: float
    within: bool    # None where the recipe was not the book's
    gap: float      # test_acc - the printed test accuracy
    changed: tuple  # the recipe's numbers the run changed

    def line(self):
        """The one line that begins 'verdict:'."""
        e = EDITIONS[self.edition]
        low, high = e.spread
        printed = e.figures['test_acc']
        gap = f'{self.gap:+.3f} to the printed {printed:.3f}'
        if self.changed:
            return (f"verdict: none, not the book's recipe "
                    f"({', '.join(self.changed)}): test acc "
                    f'{self.test_acc:.3f}, {gap}, not comparable')
        where = 'within' if self.within else 'outside'
        return (f"verdict: {where} the book's spread, test acc "
                f'{self.test_acc:.3f} against {low:.3f}..{high:.3f} '
                f'({e.spread_source}); gap {gap}')


def changes(edition, epochs, batch_size, crop):
    """The recipe's numbers a run changes, as 'epochs 1 (book: 5)'."""
    e = EDITIONS[edition]
    return tuple(f'{name} {shown(value)} (book: {shown(book)})'
                 for name, value, book in (
                     ('epochs', epochs, e.epochs),
                     ('batch size', batch_size, e.batch_size),
                     ('crop', tuple(crop), e.crop)) if value != book)


def shown(value):
    return 'x'.join(map(str, value)) if isinstance(value, tuple) \
        else str(value)


def verdict(edition, test_acc, changed=()):
    """The `Verdict` of a run of `edition` ending at `test_acc` (as
    printed, to 3 decimals, the way the book rounds it); `changed` the
    recipe's numbers the run changed (`changes`), which void it."""
    e = EDITIONS[edition]
    acc = round(test_acc, 3)
    low, high = e.spread
    within = None if changed else low <= acc <= high
    return Verdict(edition, test_acc, within,
                   round(acc - e.figures['test_acc'], 3), tuple(changed))
