"""How a run trains: the data, the net and the chapter's training loop
over a run folder (`run_folder`), top to bottom as torchvision's
`references/segmentation/train.py` reads: `data_folder`, `make_loaders`,
`build_net`, `fit`, then the final files.
"""
import contextlib
import dataclasses
import os

import mxnet as mx
from mxnet import gluon

from .. import fast
from ..core.arrays import zeros
from ..core.dataset import (SegDataset, example_paths, no_image_fits,
                            read_image, read_split, resolve_data)
from ..core.evaluate import evaluate_images, read_label
from ..core.files import save_json
from ..core.labels import resolve_classes
from ..core.model import build_fcn
from ..core.predict import predict_image
from ..core.training import (History, NonFiniteLoss, examples_per_sec,
                             fit_epochs, format_summary, make_chapter_loss,
                             seed_everything, train_seconds)
from ..dist import worker as dist
from ..errors import FCNError, WriteError
from . import figures
from .checks import check_dataset
from .devices import parse_devices
from .locks import folder_lock
from .run_folder import (check_run_dir, load_last_checkpoint,
                         prepare_run_dir, prune_checkpoints,
                         save_checkpoint, save_final_params,
                         write_epoch_files)
from .trained_on import data_record


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
    devices = parse_devices(config.devices)
    refusal = fast.mixed.training_refusal(config.precision, devices)
    if refusal:
        raise FCNError(f'--precision {config.precision}: {refusal}; train '
                       'in fp32')
    kvstore = dist.create_kvstore(config.kvstore)
    rank = dist.rank_of(kvstore)[0]
    with folder_lock(config.out) if rank == 0 else contextlib.nullcontext():
        return fit_locked(config, devices, kvstore, resume, overwrite,
                          progress)


def fit_locked(config, devices, kvstore, resume=False, overwrite=False,
               progress=True):
    """`fit` on `devices`, the run folder locked (by rank 0)."""
    out = config.out
    rank, num_workers = dist.rank_of(kvstore)
    progress = progress and num_workers == 1  # no bars through the job
    if resume and num_workers > 1:
        raise FCNError(f'--resume: not supported with --kvstore '
                       f'{config.kvstore}')
    if rank == 0:
        check_run_dir(out, resume, overwrite)
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
    if config.hybridize:  # memory planned at each step: a lower peak
        # than static_alloc's, for a little speed (README: --static-memory)
        net.hybridize(static_alloc=config.static_memory)
    loss = (make_chapter_loss if config.chapter_layers else
            fast.make_fused_loss)(
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
