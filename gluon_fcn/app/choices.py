"""`--precision auto`'s choice kept beside a run: `RUN/auto.json`, one
entry per CPU model, each valid for the run's fcn.params, the int8 recipe
and the units the CPU offered when it was measured (AMX granted or not,
or a `GLUON_FCN_CPU` fake, is measured again).
"""
import hashlib
import os

from .. import fast
from ..core.files import load_json, save_json
from ..fast.auto import Choice, units_here
from ..fast.native import cpu_model


def params_key(run_dir):
    """12 hex digits naming the run's fcn.params and the int8 recipe: a
    resumed run, or a new recipe, is calibrated and measured again."""
    with open(os.path.join(run_dir, 'fcn.params'), 'rb') as f:
        key = hashlib.sha1(f.read())
    key.update(str(fast.precision.INT8_RECIPE).encode())
    return key.hexdigest()[:12]


def choice_path(run_dir):
    return os.path.join(run_dir, 'auto.json')


def saved_choice(run_dir):
    """The `Choice` measured for this run on this CPU, or None."""
    path = choice_path(run_dir)
    if not os.path.isfile(path):
        return None
    entry = load_json(path).get(cpu_model())
    if not entry or entry.get('params') != params_key(run_dir):
        return None
    try:
        choice = Choice.from_dict(entry['choice'])
    except (KeyError, TypeError):  # written by another version
        return None
    return choice if choice.units == units_here() else None


def save_choice(run_dir, choice):
    """Keep `choice` for this CPU model, the other CPUs' entries kept."""
    path = choice_path(run_dir)
    entries = load_json(path) if os.path.isfile(path) else {}
    entries[cpu_model()] = {'params': params_key(run_dir),
                            'choice': choice.to_dict()}
    save_json(entries, path)
    return path
