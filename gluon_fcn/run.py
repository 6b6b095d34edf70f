"""A training run as a folder: config, checkpoints, resume, final files.

The run folder holds `config.json`, `log.txt` (a line per epoch),
`checkpoints/epoch-NNNN.{params,states,devices,json}`, `fcn.params` (final),
`curves.png`, `predictions.png` and `metrics.json`. Every file is written
atomically; the checkpoint's JSON is written last and marks it complete.
"""
import dataclasses
import glob
import os
import shutil

import mxnet as mx
from mxnet import gluon, np

from . import dist, viz
from .checkpoint import load_device_copies, save_device_copies
from .checks import check_dataset
from .data import (VOC_CLASSES, VOCSegDataset, download_voc, read_classes,
                   read_image, read_split)
from .errors import FCNError
from .evaluate import evaluate_images, write_report
from .files import atomic_path, load_json, remove_temporaries, save_json
from .model import build_fcn, optimize_for_inference
from .predict import label2image, predict_image
from .synthetic import DEFAULT_SIZES, make_synthetic_voc
from .train import (History, evaluate_accuracy, examples_per_sec,
                    format_epoch, make_loss, seed_everything, train)


@dataclasses.dataclass
class TrainConfig:
    """Everything a run depends on; the defaults are the textbook's."""
    data: str = 'synthetic'      # 'synthetic', 'voc2012' or a VOC folder
    out: str = os.path.join('runs', 'fcn')
    epochs: int = 5
    batch_size: int = 32
    crop: tuple = (320, 480)     # (height, width), multiples of 32
    lr: float = 0.1
    wd: float = 1e-3
    devices: str = 'auto'        # 'auto', 'cpu:0,cpu:1', 'gpu:0,gpu:1'
    pretrained: bool = False
    model_root: str = None
    backbone: str = 'resnet18_v2'
    head: str = '32s'            # '32s' (the chapter), '16s', '8s'
    classes: tuple = None        # None: classes.txt of the data, else VOC
    labels: str = 'd2l'          # 'd2l': border = background; 'voc': ignored
    flip: bool = False           # augmentation, off as in the chapter
    scale: tuple = None          # (low, high) random rescaling
    seed: int = 0
    num_workers: int = 0
    hybridize: bool = True
    chapter_layers: bool = False  # plain Conv2DTranspose (slower, same)
    data_dir: str = 'data'       # where 'synthetic' and 'voc2012' live
    synth_train: int = 200
    synth_val: int = 50
    synth_scale: float = 1.0  # of the synthetic images' sizes
    kvstore: str = 'device'      # or 'local', 'dist_sync', ... (dist.py)

    @classmethod
    def from_json(cls, path):
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in load_json(path).items() if k in fields}
        values['crop'] = tuple(values.get('crop', cls.crop))
        values['scale'] = values.get('scale') and tuple(values['scale'])
        values['classes'] = tuple(values.get('classes') or VOC_CLASSES)
        return cls(**values)


def parse_devices(spec):
    """'auto' -> every GPU, else the CPU; 'cpu:0,cpu:1' -> two CPU contexts.
    """
    num_gpus = mx.context.num_gpus()
    if spec == 'auto':
        return [mx.gpu(i) for i in range(num_gpus)] or [mx.cpu()]
    devices = []
    for item in spec.split(','):
        kind, _, index = item.strip().partition(':')
        if kind not in ('cpu', 'gpu') or not (index or '0').isdigit():
            raise FCNError(f'--devices: cannot read {item!r} '
                           '(write e.g. cpu:0,cpu:1 or gpu:0)')
        i = int(index or 0)
        if kind == 'gpu' and i >= num_gpus:
            raise FCNError(f'--devices: {item} does not exist here '
                           f'({num_gpus} GPUs visible to MXNet)')
        devices.append(mx.gpu(i) if kind == 'gpu' else mx.cpu(i))
    return devices


def resolve_data(config):
    """The VOC-layout folder behind `config.data`, made or fetched once."""
    if config.data == 'synthetic':
        return synthetic_data(config.data_dir, config.synth_train,
                              config.synth_val, config.synth_scale)
    if config.data == 'voc2012':
        return download_voc(config.data_dir)
    if not os.path.isdir(config.data):
        raise FCNError(f'--data: {config.data} is not a folder '
                       '(nor synthetic or voc2012)')
    return config.data


def synthetic_data(data_dir, num_train=200, num_val=50, scale=1.0):
    """The synthetic dataset for these settings, written on first use.

    The defaults live in `data/synthetic`; other settings get a folder
    named after them, e.g. `data/synthetic_200_50_x0.5`.
    """
    name = 'synthetic'
    if (num_train, num_val, scale) != (200, 50, 1.0):
        name += f'_{num_train}_{num_val}_x{scale:g}'
    folder = os.path.join(data_dir, name)
    if not os.path.isfile(os.path.join(folder, 'synthetic.json')):
        sizes = tuple((round(h * scale), round(w * scale))
                      for h, w in DEFAULT_SIZES)
        make_synthetic_voc(folder, num_train, num_val, seed=0, sizes=sizes)
    return folder


def resolve_classes(config, voc_dir):
    """The class names: given, or the data's classes.txt, or VOC's. Labels
    are read as indices unless the data is plain VOC (d2l's colour path).
    Returns (classes, index_labels)."""
    own = read_classes(voc_dir)
    classes = tuple(config.classes or own or VOC_CLASSES)
    return classes, classes != tuple(VOC_CLASSES) or own is not None


def make_loaders(config, voc_dir, index_labels=False, kvstore='device'):
    """d2l's load_data_voc on `voc_dir`, with the config's settings; with
    a distributed `kvstore`, the training set is this worker's shard."""
    loaders = []
    for is_train in (True, False):
        dataset = VOCSegDataset(
            is_train, config.crop, voc_dir, config.labels, index_labels,
            flip=config.flip and is_train, scale=is_train and config.scale)
        split = 'train' if is_train else 'val'
        sampler = (dist.shard_sampler(len(dataset), config.batch_size,
                                      kvstore) if is_train else None)
        if len(dataset) < config.batch_size:
            raise FCNError(
                f'{voc_dir}: the {split} split has {len(dataset)} images of '
                f'at least {config.crop[0]}x{config.crop[1]}, fewer than '
                f'--batch-size {config.batch_size}')
        loaders.append(gluon.data.DataLoader(
            dataset, config.batch_size, shuffle=is_train and sampler is None,
            sampler=sampler, last_batch='discard',
            num_workers=config.num_workers))
    return loaders


def check_run_dir(out, resume=False, overwrite=False):
    """Refuse to overwrite a run silently or to resume what is not one."""
    if os.path.isdir(out) and os.listdir(out) and not (resume or overwrite):
        raise FCNError(f'--out {out} already holds files: pass --resume '
                       'to continue that run or --overwrite to replace')
    if resume and not os.path.isfile(os.path.join(out, 'config.json')):
        raise FCNError(f'--resume: {out} is not a run (no config.json)')


def prepare_run_dir(out, resume=False, overwrite=False):
    """`check_run_dir`, then clear the run with `overwrite` and make it."""
    check_run_dir(out, resume, overwrite)
    if overwrite and not resume and os.path.isdir(out):
        shutil.rmtree(out)
    os.makedirs(os.path.join(out, 'checkpoints'), exist_ok=True)
    for folder in (out, os.path.join(out, 'checkpoints')):
        remove_temporaries(folder)


def checkpoint_paths(out, epoch):
    stem = os.path.join(out, 'checkpoints', f'epoch-{epoch:04d}')
    return tuple(stem + ext for ext in ('.params', '.states', '.devices',
                                        '.json'))


def save_checkpoint(out, epoch, net, trainer, history):
    params, states, devices, meta = checkpoint_paths(out, epoch)
    with atomic_path(params) as tmp:
        net.save_parameters(tmp)
    with atomic_path(states) as tmp:
        trainer.save_states(tmp)
    with atomic_path(devices) as tmp:
        save_device_copies(net, tmp)
    save_json({'epoch': epoch, 'points': history.points,
               'epochs': history.epochs}, meta)


def load_last_checkpoint(out, net, trainer):
    """Restore the newest complete checkpoint; return (epoch, History)."""
    metas = sorted(glob.glob(os.path.join(out, 'checkpoints',
                                          'epoch-*.json')))
    if not metas:
        return 0, History()
    meta = load_json(metas[-1])
    params, states, devices, _ = checkpoint_paths(out, meta['epoch'])
    try:
        net.load_parameters(params, ctx=list_ctx(net))
        trainer.load_states(states)
    except Exception as e:  # MXNetError, OSError: a damaged checkpoint
        raise FCNError(f'--resume: cannot load {params} and {states}') from e
    load_device_copies(net, devices)
    points = [tuple(p) for p in meta['points']]
    return meta['epoch'], History(points, meta['epochs'])


def list_ctx(net):
    return list(net.collect_params().values())[0].list_ctx()


def write_epoch_files(out, config, history):
    """log.txt and curves.png, rewritten whole from the history."""
    with atomic_path(os.path.join(out, 'log.txt')) as tmp:
        with open(tmp, 'w') as f:
            f.writelines(format_epoch(r) + '\n' for r in history.epochs)
    viz.save_curves(history.points, config.epochs,
                    os.path.join(out, 'curves.png'))


def fit(config, resume=False, overwrite=False, progress=True):
    """Train an FCN as the chapter does and fill the run folder `config.out`.

    With `resume`, continue from the run's newest complete checkpoint.
    With a distributed `config.kvstore`, this process is one worker: it
    trains on its shard, rank 0 alone writes the run folder, and each
    worker prints a checksum of its final parameters.
    """
    out = config.out
    kvstore = dist.create_kvstore(config.kvstore)
    rank, num_workers = dist.rank_of(kvstore)
    progress = progress and num_workers == 1  # no bars through the job
    if resume and num_workers > 1:
        raise FCNError(f'--resume: not supported with --kvstore '
                       f'{config.kvstore}')
    if rank == 0:
        check_run_dir(out, resume, overwrite)
    devices = parse_devices(config.devices)
    voc_dir = resolve_data(config)
    classes, index_labels = resolve_classes(config, voc_dir)
    config = dataclasses.replace(config, classes=classes)
    check_dataset(voc_dir, config.crop, len(classes), config.labels,
                  index_labels, progress)
    seed_everything(config.seed)
    train_iter, test_iter = make_loaders(config, voc_dir, index_labels,
                                         kvstore)
    if rank == 0:  # only once the data is good
        prepare_run_dir(out, resume, overwrite)
    net = build_fcn(len(config.classes), config.backbone, config.head,
                    config.pretrained, config.model_root,
                    chapter_layers=config.chapter_layers or
                    any(d.device_type != 'cpu' for d in devices))
    net.collect_params().reset_ctx(devices)
    if config.hybridize:  # static memory trains ~20% faster, and with
        # the fused loss it peaks below the chapter layers (benchmarks/)
        net.hybridize(static_alloc=True)
    loss = make_loss(config.labels)
    trainer = dist.make_trainer(net.collect_params(), config.lr, config.wd,
                                kvstore)
    start_epoch, history = (load_last_checkpoint(out, net, trainer)
                            if resume else (0, History()))
    if start_epoch:  # log.txt as of the checkpoint, whenever the kill came
        write_epoch_files(out, config, history)
    if rank == 0:
        save_json(config_dict(config), os.path.join(out, 'config.json'))

    def on_epoch_end(epoch, history):
        save_checkpoint(out, epoch, net, trainer, history)
        write_epoch_files(out, config, history)

    history = train(net, train_iter, test_iter, loss, trainer,
                    config.epochs, devices, history=history,
                    start_epoch=start_epoch,
                    on_epoch_end=on_epoch_end if rank == 0 else None,
                    seed=config.seed, progress=progress,
                    num_workers=num_workers)
    if dist.is_distributed(kvstore):
        dist.report_params(net, kvstore)
        if rank:
            return dict(history.epochs[-1], rank=rank)
    with atomic_path(os.path.join(out, 'fcn.params')) as tmp:
        net.save_parameters(tmp)
    if config.hybridize:  # training is over: fuse for the final passes
        optimize_for_inference(net, np.zeros((1, 3) + config.crop,
                                             ctx=devices[0]),
                               quadrants=not config.chapter_layers)
    save_prediction_figure(net, voc_dir, config,
                           os.path.join(out, 'predictions.png'), devices[0])
    whole, _ = evaluate_images(net, voc_dir, 'val', config.classes,
                               config.labels, config.crop, ctx=devices[0],
                               progress=progress)
    metrics = dict(history.epochs[-1], devices=str(devices),
                   examples_per_sec=examples_per_sec(history),
                   val_whole_image=whole)
    save_json(metrics, os.path.join(out, 'metrics.json'))
    return metrics


def config_dict(config):
    d = dataclasses.asdict(config)
    d.update(crop=list(config.crop), classes=list(config.classes))
    return d


def save_prediction_figure(net, voc_dir, config, path, ctx, n=4):
    """The chapter's last figure on the first `n` validation images, each
    cropped at the top left to the crop size where it is larger."""
    images, preds, labels = [], [], []
    for name in read_split(voc_dir, 'val')[:n]:
        img = read_image(os.path.join(voc_dir, 'JPEGImages', f'{name}.jpg'))
        label = read_image(os.path.join(voc_dir, 'SegmentationClass',
                                        f'{name}.png'))
        h, w = config.crop
        img, label = img[:h, :w], label[:h, :w]
        images.append(img)
        preds.append(label2image(predict_image(net, img, ctx)))
        labels.append(label)
    viz.save_prediction_grid(images, preds, labels, path)


def evaluate_run(run_dir, data, data_dir, split='val', labels='voc',
                 json_path=None, window=None, stride=None, device='cpu:0',
                 crops=False, batch_size=None, seed=0):
    """Whole-image figures of a run on a split (with `json_path`: the JSON,
    a per-class IoU bar chart and a best/worst grid beside it); with
    `crops`, the chapter's test accuracy on seeded random crops instead."""
    ctx = parse_devices(device)[0]
    net, config = load_run(run_dir, ctx)
    config = dataclasses.replace(config, data=data, data_dir=data_dir,
                                 labels=labels)
    voc_dir = resolve_data(config)
    index_labels = resolve_classes(config, voc_dir)[1]
    if crops:
        return crop_accuracy(net, config, voc_dir, split, batch_size, seed,
                             json_path, index_labels)
    window = window or config.crop
    metrics, scores = evaluate_images(net, voc_dir, split, config.classes,
                                      labels, window, stride, ctx)
    print(f'{split}: pixel acc {metrics["pixel_acc"]:.3f}, mean acc '
          f'{metrics["mean_acc"]:.3f}, mean IoU {metrics["mean_iou"]:.3f}, '
          f'fw IoU {metrics["fw_iou"]:.3f} on {metrics["images"]} whole '
          f'images ({labels} labels)')
    if json_path:
        write_report(net, voc_dir, metrics, scores, json_path,
                     config.classes, labels, window, stride, ctx)
    return metrics


def crop_accuracy(net, config, voc_dir, split, batch_size, seed, json_path,
                  index_labels=False):
    """The chapter's test accuracy: seeded random crops of the run's size.
    """
    seed_everything(seed)
    dataset = VOCSegDataset(split == 'train', config.crop, voc_dir,
                            config.labels, index_labels)
    data_iter = gluon.data.DataLoader(dataset, batch_size or
                                      config.batch_size)
    acc = evaluate_accuracy(net, data_iter)
    figures = {'accuracy': acc, 'split': split, 'images': len(dataset),
               'crop': list(config.crop), 'data': voc_dir, 'seed': seed,
               'labels': config.labels}
    print(f'{split} accuracy {acc:.3f} on {len(dataset)} images '
          f'({config.crop[0]}x{config.crop[1]} random crops)')
    if json_path:
        save_json(figures, json_path)
    return figures


def load_run(run_dir, ctx=None):
    """The trained net of a run folder, made fast for inference
    (`optimize_for_inference`: train it no further), and its config."""
    config_path = os.path.join(run_dir, 'config.json')
    params = os.path.join(run_dir, 'fcn.params')
    if not os.path.isfile(config_path):
        raise FCNError(f'--run {run_dir}: not a run folder (no config.json)')
    if not os.path.isfile(params):
        raise FCNError(f'--run {run_dir}: no fcn.params (did training '
                       'finish? continue it with train --resume)')
    config = TrainConfig.from_json(config_path)
    ctx = ctx or mx.cpu()
    net = build_fcn(len(config.classes), config.backbone, config.head,
                    ctx=ctx, chapter_layers=config.chapter_layers)
    try:
        net.load_parameters(params, ctx=ctx)
    except Exception as e:  # MXNetError, AssertionError: not our params
        raise FCNError(f'--run {run_dir}: cannot load {params}') from e
    optimize_for_inference(net, np.zeros((1, 3) + config.crop, ctx=ctx),
                           quadrants=not config.chapter_layers)
    return net, config

