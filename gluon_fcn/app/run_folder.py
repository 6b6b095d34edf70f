"""Where a run lives: its folder, its checkpoints, resuming them, and the
files that follow each epoch.

The run folder holds `config.json`, `log.txt` (a line per epoch),
`checkpoints/epoch-NNNN.{params,states,devices,json}` of the newest
`keep_checkpoints` epochs, `fcn.params` (final, the last checkpoint's
parameters, hard-linked where the disk allows; legacy NDArray format,
loadable with MXNet's NumPy mode on or off),
`curves.png`, `predictions.png` and `metrics.json`, and once a command
asks for int8, `int8/fcn-<hash of fcn.params>-{symbol.json,0000.params}`
(the calibrated int8 net, `loading`), and for auto, `auto.json`
(`choices`). Every file is written atomically; the checkpoint's JSON is
written last and marks it complete. Training fills it (`fit`).
"""
import os
import re
import sys

from ..core.checkpoint import (UnreadableCheckpoint, load_device_copies,
                               save_device_copies, save_params)
from ..core.files import (atomic_path, check_readable, discard,
                          link_or_copy, load_json, make_folder, remove_entry,
                          remove_file, remove_temporaries, save_json,
                          write_text)
from ..core.training import History, format_epoch
from ..errors import FCNError
from . import figures
from .locks import entries


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
