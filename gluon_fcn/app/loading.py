"""How a run is loaded: its trained net, as it trained (`read_run`) or
made fast for inference in a precision (`load_run`), with the int8 net
calibrated once and kept in the run folder.
"""
import glob
import os
import sys

import mxnet as mx
import numpy as onp

from .. import fast
from ..core.arrays import zeros
from ..core.dataset import (data_path, example_paths, no_image_fits,
                            read_image, read_split)
from ..core.files import check_readable, remove_file
from ..core.predict import image_batch
from ..errors import FCNError
from .choices import params_key, save_choice, saved_choice
from .config import TrainConfig
from .fit import build_net


def with_flag(flag, value, function, *args):
    """`function(*args)`, its `FCNError` prefixed with the flag at fault."""
    try:
        return function(*args)
    except FCNError as e:
        raise FCNError(f'{flag} {value}: {e}') from e


def read_run(run_dir, ctx=None, flag='--run'):
    """The trained net of a run folder as it trained (the fast CPU
    operators unless the run chose the chapter's layers), and its config,
    in the flavour of the MXNet mode in force."""
    config_path = os.path.join(run_dir, 'config.json')
    params = os.path.join(run_dir, 'fcn.params')
    if os.path.lexists(run_dir):
        with_flag(flag, run_dir, check_readable, run_dir, 'run folder')
    if not os.path.isfile(config_path):
        raise FCNError(f'{flag} {run_dir}: not a run folder (no '
                       'config.json)')
    if not os.path.isfile(params):
        raise FCNError(f'{flag} {run_dir}: no fcn.params (did training '
                       'finish? continue it with train --resume)')
    with_flag(flag, run_dir, check_readable, params, 'params file')
    config = TrainConfig.from_json(config_path)
    ctx = ctx or mx.cpu()
    net = build_net(config, [ctx], pretrained=False)
    try:
        net.load_parameters(params, ctx=ctx)
    except Exception as e:  # MXNetError, AssertionError: not our params
        raise FCNError(f'{flag} {run_dir}: cannot load {params}') from e
    return net, config


def load_run(run_dir, ctx=None, flag='--run', precision='fp32'):
    """The trained net of a run folder, made fast for inference
    (`optimize_for_inference`: train it no further), and its config, in
    the flavour of the MXNet mode in force. With `precision` 'bf16' or
    'int8', the backbone runs in it (`gluon_fcn.fast.precision`); int8 is
    calibrated on the run's training images once, and kept in the run's
    `int8/` folder. 'auto' measures the fastest that keeps the classes
    (`gluon_fcn.fast.auto`) once per CPU model, kept in `auto.json`
    (`choices`); the net's `choice` says what was measured."""
    net, config = read_run(run_dir, ctx, flag)
    known = saved_choice(run_dir) if precision == 'auto' else None
    cache = int8_cache(run_dir) if precision in ('int8', 'auto') else None
    had = cache and int8_bytes(cache)
    net = fast.optimize_for_inference(
        net, zeros((1, 3) + config.crop, ctx=ctx or mx.cpu()),
        quadrants=False, precision=precision,
        calib_data=lambda: calibration_images(config),
        int8_cache=cache, choice=known)
    if cache and not had and int8_bytes(cache):
        print(f'gluon-fcn: note: the calibrated int8 net is kept in '
              f'{os.path.dirname(cache)} ({int8_bytes(cache) / 1e6:.0f} '
              'MB), to load at once next time', file=sys.stderr)
    if getattr(net, 'choice', None) and not known:
        save_choice(run_dir, net.choice)
    return net, config


def int8_bytes(prefix):
    """The size of the int8 net kept at `prefix` (`int8_cache`), 0 where
    there is none yet."""
    return sum(os.path.getsize(path)
               for path in glob.glob(glob.escape(prefix) + '-*'))


def int8_cache(run_dir):
    """The file prefix of the run's calibrated int8 net, named after its
    fcn.params and the int8 recipe (`params_key`), so a resumed run, or a
    new recipe, is calibrated again; older ones are removed."""
    key = params_key(run_dir)
    prefix = os.path.join(run_dir, 'int8', f'fcn-{key}')
    for path in glob.glob(os.path.join(glob.escape(run_dir), 'int8', '*')):
        if not os.path.basename(path).startswith(f'fcn-{key}-'):
            remove_file(path)
    return prefix


def calibration_images(config, n=fast.precision.NUM_CALIB_EXAMPLES):
    """(n, 3, H, W) float32 NumPy: centre crops of the config's size of
    the first `n` training images that are as large, normalised as in
    training (for int8 calibration). They are read where training left
    them, never made or downloaded again: predicting writes no data."""
    voc_dir = data_path(config.data, config.data_dir, config.synth_train,
                        config.synth_val, config.synth_scale)
    try:
        names = read_split(voc_dir, 'train')
    except FCNError as e:
        raise FCNError(
            f'--precision int8: calibrating needs the run\'s training '
            f'images, not found at {voc_dir} ({e}): run from the folder '
            'the run was trained in, or choose --precision fp32 or bf16'
        ) from e
    (h, w), crops, sizes = config.crop, [], []
    for name in names:
        img = read_image(example_paths(voc_dir, name)[0])
        sizes.append(img.shape[:2])
        y0, x0 = (img.shape[0] - h) // 2, (img.shape[1] - w) // 2
        if y0 >= 0 and x0 >= 0:
            crops.append(image_batch(img[y0:y0 + h, x0:x0 + w]).asnumpy())
        if len(crops) == n:
            break
    if not crops:
        raise FCNError(no_image_fits(voc_dir, 'train', config.crop, sizes))
    return onp.concatenate(crops)
