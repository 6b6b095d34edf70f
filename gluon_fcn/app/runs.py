"""A training run as a folder: config, checkpoints, resume, final files.

The run folder holds `config.json`, `log.txt` (a line per epoch),
`checkpoints/epoch-NNNN.{params,states,devices,json}` of the newest
`keep_checkpoints` epochs, `fcn.params` (final, the last checkpoint's
parameters, hard-linked where the disk allows; legacy NDArray format,
loadable with MXNet's NumPy mode on or off),
`curves.png`, `predictions.png` and `metrics.json`, and once a command
asks for int8, `int8/fcn-<hash of fcn.params>-{symbol.json,0000.params}`
(the calibrated int8 net), and for auto, `auto.json` (`choices`). Every
file is written atomically; the checkpoint's JSON is written last and
marks it complete.
"""
import contextlib
import dataclasses
import glob
import os
import re
import sys

import mxnet as mx
import numpy as onp
from mxnet import gluon

from .. import fast
from ..core.arrays import zeros
from ..core.checkpoint import (UnreadableCheckpoint, load_device_copies,
                               save_device_copies, save_params)
from ..core.dataset import (SegDataset, data_path, example_paths,
                            no_image_fits, read_image, read_split,
                            resolve_data)
from ..core.evaluate import evaluate_images, read_label
from ..core.files import (atomic_path, check_readable, discard,
                          link_or_copy, load_json, make_folder, remove_entry,
                          remove_file, remove_temporaries, save_json,
                          write_text)
from ..core.labels import resolve_classes
from ..core.model import build_fcn
from ..core.predict import image_batch, predict_image
from ..core.training import (History, NonFiniteLoss, examples_per_sec,
                             fit_epochs, format_epoch, format_summary,
                             make_loss, seed_everything, train_seconds)
from ..dist import worker as dist
from ..errors import FCNError, WriteError
from . import figures
from .checks import check_dataset
from .choices import params_key, save_choice, saved_choice
from .config import TrainConfig
from .locks import entries, folder_lock
from .trained_on import data_record


def parse_devices(spec, flag='--devices'):
    """'auto' -> every GPU, else the CPU; 'cpu:0,cpu:1' -> two CPU contexts.
    """
    num_gpus = mx.context.num_gpus()
    if spec == 'auto':
        return [mx.gpu(i) for i in range(num_gpus)] or [mx.cpu()]
    devices = []
    for item in spec.split(','):
        kind, _, index = item.strip().partition(':')
        if kind not in ('cpu', 'gpu') or not (index or '0').isdigit():
            raise FCNError(f'{flag}: cannot read {item!r} '
                           '(write e.g. cpu:0,cpu:1 or gpu:0)')
        i = int(index or 0)
        if kind == 'gpu' and i >= num_gpus:
            raise FCNError(f'{flag}: {item} does not exist here '
                           f'({num_gpus} GPUs visible to MXNet)')
        devices.append(mx.gpu(i) if kind == 'gpu' else mx.cpu(i))
    return devices


def parse_device(spec, flag='--device'):
    """The one device of `spec`: 'cpu:0', 'gpu:1' or 'auto'."""
    devices = parse_devices(spec, flag)
    if len(devices) > 1 and spec != 'auto':
        raise FCNError(f'{flag} {spec}: give one device, e.g. cpu:0 or '
                       'gpu:0')
    return devices[0]


def data_folder(config, progress=True):
    """The VOC-layout folder behind `config.data`, made or fetched once."""
    try:
        return resolve_data(config.data, config.data_dir, config.synth_train,
                            config.synth_val, config.synth_scale, progress)
    except WriteError as e:  # a --data-dir that cannot be written
        raise FCNError(f'--data-dir {config.data_dir}: {e}') from e
    except FCNError as e:
        raise FCNError(f'--data: {e}') from e


def make_loaders(config, voc_dir, index_labels=False, kvstore='device'):
    """d2l's load_data_voc on `voc_dir`, with the config's settings; with
    a distributed `kvstore`, the training set is this worker's shard."""
    loaders = []
    for is_train in (True, False):
        dataset = SegDataset(
            is_train, config.crop, voc_dir, config.labels, index_labels,
            flip=config.flip and is_train, scale=is_train and config.scale)
        split = 'train' if is_train else 'val'
        if not len(dataset):  # d2l would go on with an empty dataset
            raise FCNError(no_image_fits(voc_dir, split, config.crop,
                                         dataset.sizes))
        if len(dataset) < config.batch_size:
            raise FCNError(
                f'{voc_dir}: the {split} split has {len(dataset)} images of '
                f'at least {config.crop[0]}x{config.crop[1]}, fewer than '
                f'--batch-size {config.batch_size}')
        sampler = (dist.shard_sampler(len(dataset), config.batch_size,
                                      kvstore) if is_train else None)
        loaders.append(gluon.data.DataLoader(
            dataset, config.batch_size, shuffle=is_train and sampler is None,
            sampler=sampler, last_batch='discard',
            num_workers=config.num_workers))
    return loaders


def check_run_dir(out, resume=False, overwrite=False):
    """Refuse to overwrite a run silently or to resume what is not one; a
    run stopped before its first checkpoint has nothing to lose and may
    be started again by the same command."""
    if os.path.lexists(out):
        check_readable(out, 'folder')
    if os.path.isdir(out) and entries(out) and \
            not (resume or overwrite or unstarted_run(out)):
        raise FCNError(f'--out {out} already holds files: pass --resume '
                       'to continue that run or --overwrite to replace')
    if resume and not os.path.isfile(os.path.join(out, 'config.json')):
        raise FCNError(f'--resume: {out} is not a run (no config.json)')


def unstarted_run(out):
    """Whether `out` holds only what a run writes before its first
    checkpoint (config.json, checkpoints/ with no complete checkpoint)."""
    names = set(entries(out))
    return 'checkpoints' in names and \
        names <= {'config.json', 'checkpoints'} and \
        last_checkpoint(out) is None


def prepare_run_dir(out, resume=False, overwrite=False):
    """`check_run_dir`, then clear the run with `overwrite` (or one never
    checkpointed) and make it."""
    check_run_dir(out, resume, overwrite)
    if not resume and os.path.isdir(out) and entries(out) and \
            (overwrite or unstarted_run(out)):
        for name in entries(out):  # the lock stays: this process holds it
            remove_entry(os.path.join(out, name))
    make_folder(os.path.join(out, 'checkpoints'))
    for folder in (out, os.path.join(out, 'checkpoints')):
        remove_temporaries(folder)


CHECKPOINT_NAME = re.compile(r'epoch-(\d+)\.(params|states|devices|json)')


def checkpoint_paths(out, epoch):
    stem = os.path.join(out, 'checkpoints', f'epoch-{epoch:04d}')
    return tuple(stem + ext for ext in ('.params', '.states', '.devices',
                                        '.json'))


def save_checkpoint(out, epoch, net, trainer, history):
    """Write the checkpoint of `epoch`, its JSON last (it marks the
    checkpoint complete). If a write fails or a signal comes, the files
    of this epoch written so far are removed: the checkpoints folder
    holds complete checkpoints only."""
    paths = checkpoint_paths(out, epoch)
    params, states, devices, meta = paths
    try:
        save_params(net, params)
        with atomic_path(states) as tmp:
            trainer.save_states(tmp)
        save_device_copies(net, devices)
        save_json({'epoch': epoch, 'points': history.points,
                   'epochs': history.epochs}, meta)
    except BaseException:
        discard(paths)
        raise


def checkpoint_files(out):
    """{name: (epoch, extension)} of the checkpoint files in the run
    folder `out`."""
    folder = os.path.join(out, 'checkpoints')
    if not os.path.isdir(folder):
        return {}
    check_readable(folder, 'folder')
    found = {name: CHECKPOINT_NAME.fullmatch(name)
             for name in os.listdir(folder)}
    return {name: (int(m.group(1)), m.group(2))
            for name, m in found.items() if m}


def complete_checkpoints(out):
    """The epochs of the complete checkpoints (their JSON, written last,
    is there) in the run folder `out`, oldest first."""
    return sorted(epoch for epoch, ext in checkpoint_files(out).values()
                  if ext == 'json')


def last_checkpoint(out):
    """The epoch of the newest complete checkpoint in the run folder
    `out`, or None."""
    epochs = complete_checkpoints(out)
    return epochs[-1] if epochs else None


def prune_checkpoints(out, keep):
    """Remove every checkpoint file older than the newest `keep` complete
    checkpoints (with `keep` 0, none). The JSONs go first, so a stop
    midway leaves no old checkpoint that looks complete; the newest
    complete one and anything newer are never touched."""
    kept = complete_checkpoints(out)[-keep:] if keep else []
    if not kept:
        return
    old = [(ext != 'json', name) for name, (epoch, ext)
           in checkpoint_files(out).items() if epoch < kept[0]]
    for _, name in sorted(old):
        remove_file(os.path.join(out, 'checkpoints', name))


def load_last_checkpoint(out, net, trainer):
    """Restore the newest complete checkpoint that loads; return (epoch,
    History). A newer one whose files do not load (cut short by a crash
    of the disk) is passed over with a note, and the run resumes exactly
    from the one before; where none loads, the newest's fault is raised.
    """
    epochs = complete_checkpoints(out)
    newest_fault = None
    for epoch in reversed(epochs):
        try:
            restored = load_checkpoint(out, epoch, net, trainer)
        except UnreadableCheckpoint as e:
            newest_fault = newest_fault or e
            continue
        if newest_fault:
            print(f'gluon-fcn: note: {newest_fault}; resuming from epoch '
                  f'{epoch}, the newest checkpoint that loads',
                  file=sys.stderr)
        return restored
    if newest_fault:
        raise newest_fault
    return 0, History()


def load_checkpoint(out, epoch, net, trainer):
    """Restore the checkpoint of `epoch`; return (epoch, History)."""
    params, states, devices, meta_path = checkpoint_paths(out, epoch)
    meta = load_json(meta_path)
    for path in (params, states):
        check_readable(path, 'checkpoint file')
    try:
        net.load_parameters(params, ctx=list_ctx(net))
        trainer.load_states(states)
    except Exception as e:  # MXNetError, OSError: a damaged checkpoint
        raise UnreadableCheckpoint(
            f'--resume: cannot load {params} and {states}') from e
    load_device_copies(net, devices)
    points = [tuple(p) for p in meta['points']]
    return meta['epoch'], History(points, meta['epochs'])


def list_ctx(net):
    return list(net.collect_params().values())[0].list_ctx()


def write_epoch_files(out, config, history):
    """log.txt and curves.png, rewritten whole from the history."""
    write_text(''.join(format_epoch(r, config.labels) + '\n'
                       for r in history.epochs),
               os.path.join(out, 'log.txt'))
    figures.save_curves(history.points, history.epochs, config.epochs,
                        os.path.join(out, 'curves.png'),
                        title=f'{config.backbone} FCN-{config.head}, lr '
                              f'{config.lr:g}, batch {config.batch_size}',
                        labels=config.labels)


def build_net(config, devices=(mx.cpu(),), pretrained=None):
    """The run's FCN on `devices`: the chapter's layers, computed by the
    fast CPU operators unless `config.chapter_layers` (or a GPU)."""
    net = build_fcn(len(config.classes), config.backbone, config.head,
                    config.pretrained if pretrained is None else pretrained,
                    config.model_root,
                    upsampler_init=config.upsampler_init)
    if not config.chapter_layers and \
            all(d.device_type == 'cpu' for d in devices):
        fast.accelerate(net)
    net.collect_params().reset_ctx(list(devices))
    return net


def fit(config, resume=False, overwrite=False, progress=True):
    """Train an FCN as the chapter does and fill the run folder `config.out`.

    With `resume`, continue from the run's newest complete checkpoint.
    With a distributed `config.kvstore`, this process is one worker: it
    trains on its shard, rank 0 alone writes the run folder, and each
    worker prints a checksum of its final parameters. Works in either
    MXNet mode. The folder is locked for the while (`locks`): a second
    writer is refused.
    """
    refusal = fast.mixed.training_refusal(config.precision,
                                          parse_devices(config.devices))
    if refusal:
        raise FCNError(f'--precision {config.precision}: {refusal}; train '
                       'in fp32')
    kvstore = dist.create_kvstore(config.kvstore)
    rank = dist.rank_of(kvstore)[0]
    with folder_lock(config.out) if rank == 0 else contextlib.nullcontext():
        return fit_locked(config, kvstore, resume, overwrite, progress)


def fit_locked(config, kvstore, resume=False, overwrite=False,
               progress=True):
    """`fit`, the run folder locked (by rank 0)."""
    out = config.out
    rank, num_workers = dist.rank_of(kvstore)
    progress = progress and num_workers == 1  # no bars through the job
    if resume and num_workers > 1:
        raise FCNError(f'--resume: not supported with --kvstore '
                       f'{config.kvstore}')
    if rank == 0:
        check_run_dir(out, resume, overwrite)
    devices = parse_devices(config.devices)
    voc_dir = data_folder(config, progress)
    record = data_record(config.data, voc_dir)
    classes, index_labels = resolve_classes(config.classes, voc_dir)
    config = dataclasses.replace(config, classes=classes)
    check_dataset(voc_dir, config.crop, len(classes), config.labels,
                  index_labels, progress)
    seed_everything(config.seed)
    train_iter, test_iter = make_loaders(config, voc_dir, index_labels,
                                         kvstore)
    if rank == 0:  # only once the data is good; config.json first of all
        prepare_run_dir(out, resume, overwrite)
        save_json(dict(config.to_dict(), **record),
                  os.path.join(out, 'config.json'))
    net = build_net(config, devices)
    if config.precision == 'bf16':
        fast.mixed.use_bf16_convolutions(net)
        print(f'training in bf16 on {fast.cpu.cpu_path("bf16")}: the '
              'convolutions in bfloat16; weights, loss and upsampler in '
              'float32')
    if config.hybridize:  # memory planned at each step: at batch 32 of
        # 320x480 it peaks 0.6 GB lower than static_alloc, below PyTorch's
        # port, for 7-12% of the speed (benchmarks/README.md)
        net.hybridize(static_alloc=config.static_memory)
    loss = (make_loss if config.chapter_layers else fast.make_loss)(
        config.labels)
    trainer = dist.make_trainer(net.collect_params(), config.lr, config.wd,
                                kvstore)
    start_epoch, history = (load_last_checkpoint(out, net, trainer)
                            if resume else (0, History()))
    if start_epoch:  # log.txt as of the checkpoint, whenever the kill came
        write_epoch_files(out, config, history)

    def on_epoch_end(epoch, history):
        save_checkpoint(out, epoch, net, trainer, history)
        prune_checkpoints(out, config.keep_checkpoints)
        write_epoch_files(out, config, history)

    try:
        history = fit_epochs(
            net, train_iter, test_iter, loss, trainer, config.epochs,
            devices, history=history, start_epoch=start_epoch,
            on_epoch_end=on_epoch_end if rank == 0 else None,
            seed=config.seed, progress=progress, num_workers=num_workers,
            convention=config.labels)
    except NonFiniteLoss as e:
        raise FCNError(f'{e} (a lower --lr may help)') from e
    if history.epochs:
        print(format_summary(history, devices, num_workers))
    if dist.is_distributed(kvstore):
        dist.report_params(net, kvstore)
        if rank:
            return dict(history.epochs[-1], rank=rank)
    save_final_params(out, net, history)
    # the final passes as `evaluate --run` makes them: in float32
    fast.mixed.use_float32_convolutions(net)
    if config.hybridize:  # training is over: fuse for the final passes
        net = fast.optimize_for_inference(
            net, zeros((1, 3) + config.crop, ctx=devices[0]),
            quadrants=False)
    save_prediction_figure(net, voc_dir, config,
                           os.path.join(out, 'predictions.png'), devices[0])
    whole, _ = evaluate_images(net, voc_dir, 'val', config.classes,
                               config.labels, config.crop, ctx=devices[0],
                               progress=progress)
    # the last epoch's figures, under the run's labels; the run's time
    # and throughput
    metrics = dict(history.epochs[-1], labels=config.labels,
                   devices=str(devices),
                   examples_per_sec=examples_per_sec(history),
                   train_seconds=train_seconds(history),
                   last_epoch_train_seconds=history.epochs[-1][
                       'train_seconds'], **record, val_whole_image=whole)
    save_json(metrics, os.path.join(out, 'metrics.json'))
    return metrics


def save_final_params(out, net, history):
    """fcn.params: the parameters of the last checkpoint, which are the
    net's; a hard link to it where the disk allows (the demo's folder
    holds two checkpoints, not three copies of 52 MB)."""
    path = os.path.join(out, 'fcn.params')
    last = history.epochs[-1]['epoch'] if history.epochs else None
    checkpoint = last and checkpoint_paths(out, last)
    if checkpoint and os.path.isfile(checkpoint[-1]):  # complete
        link_or_copy(checkpoint[0], path)
    else:
        save_params(net, path)


def save_prediction_figure(net, voc_dir, config, path, ctx, n=4):
    """The chapter's last figure on the first `n` validation images, each
    cut to the crop size at the top left where it is larger."""
    images, preds, labels, titles = [], [], [], []
    h, w = config.crop
    for name in read_split(voc_dir, 'val')[:n]:
        img = read_image(example_paths(voc_dir, name)[0])
        titles.append(f'{name}\n{shown_part(img.shape[:2], config.crop)}')
        img = img[:h, :w]
        images.append(img)
        preds.append(predict_image(net, img, ctx))
        labels.append(read_label(voc_dir, name, config.labels)[:h, :w])
    figures.save_prediction_grid(
        images, preds, labels, path, config.classes, titles,
        title=f'The first {len(images)} validation images, each cut to at '
              f'most {h}x{w} at the top left ({config.labels} labels)')


def shown_part(size, crop):
    """What a figure shows of an image of `size` (height, width) cut to
    `crop` at the top left: 'whole, 75x100' or 'top-left 160x224 of
    375x500'."""
    (h, w), (ch, cw) = size, crop
    if h <= ch and w <= cw:
        return f'whole, {h}x{w}'
    return f'top-left {min(h, ch)}x{min(w, cw)} of {h}x{w}'


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
