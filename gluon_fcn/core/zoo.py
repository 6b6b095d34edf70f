"""Pretrained FCNs from gluoncv's model zoo, as nets like `build_fcn`'s.

The PyTorch blog of the material runs torchvision's pretrained
`fcn_resnet101` on photos; MXNet's counterpart is gluoncv's model zoo:
`fcn_resnet101_voc`, `fcn_resnet101_coco` (COCO's images, VOC's 21
classes), `fcn_resnet50_ade` and `fcn_resnet101_ade` (ADE20K's 150). Their
weights come from gluoncv's model store (`~/.mxnet/models`), or from a
file saved from the same architecture. gluoncv's FCN is Long et al.'s head
on a dilated ResNet (output stride 8), trained with an auxiliary head.

gluoncv is imported here only (`import_gluoncv`), and its model code is
used, not copied.
"""
import contextlib
import os
import sys

import numpy as onp
from mxnet import cpu
from mxnet.gluon import nn

from ..errors import FCNError
from .arrays import as_legacy, like
from .files import discard
from .labels import Legend
from .model import default_model_root, seq
from .torchvision_fcn import PREFIX, load_torchvision

# the zoo's name suffix -> gluoncv's dataset name (palette, class list)
DATASETS = {'voc': 'pascal_voc', 'coco': 'coco', 'ade': 'ade20k'}
OUTPUT_STRIDE = 8  # gluoncv's dilated ResNets: (B, 2048, H/8, W/8)
ZOO_WINDOW = (480, 480)  # gluoncv's crop size, what the zoo trained on


def import_gluoncv():
    """gluoncv, imported beside PyTorch.

    gluoncv 0.10.5 refuses to import at all where torch >= 2 is installed
    (our `compare` extra): its torch version check raises RuntimeError,
    not the ImportError it catches. Hidden while gluoncv imports, torch is
    'not installed' to it and its MXNet half loads; torch itself is put
    back untouched. Later imports get the cached module.
    """
    if 'gluoncv' in sys.modules:
        return sys.modules['gluoncv']
    saved = sys.modules.get('torch')
    sys.modules['torch'] = None  # `import torch` raises ImportError
    try:
        import gluoncv
    except ImportError as e:
        raise FCNError(f'the model zoo needs gluoncv ({e}): pip install '
                       'gluoncv==0.10.5') from e
    finally:
        if saved is None:
            del sys.modules['torch']
        else:
            sys.modules['torch'] = saved
    return gluoncv


def zoo_names():
    """The FCNs of gluoncv's model zoo (its int8 ones left out), those
    with published weights and `fcn_resnet50_voc`, which has none."""
    return [name for name in import_gluoncv().model_zoo.get_model_list()
            if name.startswith('fcn_') and
            name.rsplit('_', 1)[-1] in DATASETS]


def check_name(name):
    names = zoo_names()
    if name not in names:
        raise FCNError(f'unknown zoo model {name!r}; choose from '
                       f'{", ".join(names)}')


def zoo_legend(name, classes):
    """Names, palette and background of a zoo model's classes: gluoncv's
    palette of its dataset (`get_color_pallete`; ADE20K's is shifted by
    one there, its 0 being 'other', which the model does not predict)."""
    dataset = DATASETS[name.rsplit('_', 1)[-1]]
    viz = import_gluoncv().utils.viz
    palette = viz.get_color_pallete(onp.zeros((1, 1), 'uint8'),
                                    dataset).getpalette()
    if dataset == 'ade20k':
        palette = palette[3:]
    palette = (list(palette) + [0] * 768)[:768]
    return Legend(tuple(classes), tuple(palette),
                  0 if classes[0] == 'background' else None)


@contextlib.contextmanager
def removed_on_failure(root, stem):
    """gluoncv's fetch leaves its lock file, a partial zip and the folder
    it made when the download fails: remove what it added then."""
    made = not os.path.isdir(root)
    extras = [os.path.join(root, stem + ext) for ext in ('.lock', '.zip')]
    before = [os.path.exists(path) for path in extras]
    try:
        yield
    except BaseException:
        discard(path for path, existed in zip(extras, before)
                if not existed)
        if made and os.path.isdir(root) and not os.listdir(root):
            with contextlib.suppress(OSError):  # the failure is the news
                os.rmdir(root)
        raise


def zoo_params_file(name, root=None):
    """The verified weights file of a zoo model in the model store.

    Looks in `root` (default `~/.mxnet/models`, `$MXNET_HOME/models`);
    a missing or corrupt file is fetched from gluoncv's model zoo, and
    where that fails (offline) the error names the file to put in `root`.
    """
    gluoncv = import_gluoncv()
    store = gluoncv.model_zoo.model_store
    root = os.path.expanduser(root or default_model_root())
    try:
        short_hash = store.short_hash(name)
    except ValueError as e:
        raise FCNError(f'gluoncv publishes no weights for {name}: give a '
                       'file of its weights (--params FILE)') from e
    stem = f'{name}-{short_hash}'
    path = os.path.join(root, f'{stem}.params')
    # gluoncv looks in $MXNET_HOME/models instead of `root` where that is
    # set: a file put in `root`, as the error below says, is found here
    if os.path.isfile(path) and gluoncv.utils.check_sha1(path, short_hash):
        return path
    try:
        with removed_on_failure(root, stem):
            return store.get_model_file(name, root=root)
    except Exception as e:  # no network, bad hash, no space: one line
        raise FCNError(
            f'pretrained weights of {name} are not available: put '
            f'{stem}.params in {root} (or pass --model-root DIR)') from e


class ZooFCN(nn.HybridBlock):
    """A gluoncv FCN as the package's nets are: (B, 3, H, W) -> (B, C, H,
    W) logits, its main head only, in the flavour of its parameters.

    gluoncv's own forward returns a tuple (main and auxiliary head)
    resized to the crop size it was built with (480x480) whatever the
    input, and its `predict` resizes to the input by changing the block.
    This wrapper runs gluoncv's backbone and head and resizes bilinearly
    by the output stride, which MXNet's ONNX exporter translates (its
    'like' mode it cannot), cropping to the input; for H and W multiples
    of 8 that is gluoncv's `predict` exactly.

    `fcn` is the gluoncv net, whose layers (not the auxiliary head) it
    shares; `legend` names its classes (`gluon_fcn.core.labels.Legend`),
    `window` is its crop size.
    """

    def __init__(self, fcn, name, **kwargs):
        super().__init__(**kwargs)
        # gluoncv's `base_forward`, layer by layer
        self.backbone = seq([fcn.conv1, fcn.bn1, fcn.relu, fcn.maxpool,
                             fcn.layer1, fcn.layer2, fcn.layer3,
                             fcn.layer4])
        self.head = fcn.head
        self.zoo_name = name
        self.legend = zoo_legend(name, fcn.classes)
        self.window = ZOO_WINDOW

    def hybrid_forward(self, F, x):
        score = self.head(self.backbone(x))  # (B, C, H/8, W/8)
        # BilinearResize2D and slice_like exist in the legacy flavour only
        out = F.contrib.BilinearResize2D(
            as_legacy(score), scale_height=OUTPUT_STRIDE,
            scale_width=OUTPUT_STRIDE)
        out = F.slice_like(out, as_legacy(x), axes=(2, 3))
        return like(out, x)  # (B, C, H, W)


def zoo_architecture(name, ctx=None):
    """gluoncv's FCN `name` with random weights (its heads initialised,
    its backbone not: `initialize` it and call `ZooFCN` of it once, or
    load weights into it), in the flavour of the MXNet mode in force."""
    check_name(name)
    return import_gluoncv().model_zoo.get_model(
        name, pretrained=False, pretrained_base=False, ctx=ctx or cpu())


def load_params(fcn, path, name, ctx):
    """Load a weights file into gluoncv net `fcn`, refusing one of another
    architecture in one line."""
    try:
        fcn.load_parameters(path, ctx=ctx)
    except Exception as e:  # AssertionError, MXNetError: not its weights
        raise FCNError(f'{path}: not weights of {name} (saved from another '
                       'architecture, or not a weights file)') from e


def load_pretrained(name, root=None, params=None, ctx=None):
    """A pretrained FCN of gluoncv's model zoo (e.g. 'fcn_resnet101_voc')
    or torchvision's ('torchvision:fcn_resnet101', built in Gluon:
    `gluon_fcn.core.torchvision_fcn`) for `predict_sliding`,
    `evaluate_images` and the figures.

    Parameters
    ----------
    name : str, one of `zoo_names()`, or 'torchvision:fcn_resnet50' or
        'torchvision:fcn_resnet101'.
    root : str, optional
        The model store folder (default `~/.mxnet/models`; torchvision's:
        the torch hub cache, `$TORCH_HOME/hub/checkpoints`); weights
        missing there are downloaded once.
    params : str, optional
        A file of weights saved from the same architecture
        (`save_parameters` of `zoo_architecture(name)`; torchvision's: a
        `.pth` of its `state_dict()`), used instead of the model store.
    ctx : Context, default cpu.

    Returns
    -------
    net : `ZooFCN` or `TorchvisionFCN`, (B, 3, H, W) -> (B, C, H, W)
        logits; `net.legend` names its classes (VOC's 21, COCO's VOC
        subset, ADE20K's 150), `net.window` is its crop size.
    """
    if name.startswith(PREFIX):
        return load_torchvision(name[len(PREFIX):], root, params, ctx)
    check_name(name)
    ctx = ctx or cpu()
    if params is not None and not os.path.isfile(params):
        raise FCNError(f'{params}: no such weights file')
    path = params or zoo_params_file(name, root)  # before the build
    fcn = zoo_architecture(name, ctx)
    load_params(fcn, path, name, ctx)
    return ZooFCN(fcn, name)
