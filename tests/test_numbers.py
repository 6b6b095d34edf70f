"""Numbers that are not numbers, refused through the API (issue 25):
`TrainConfig` (made in code or read from a run's config.json),
`build_fcn`, `fit_epochs` and `train_fcn` name the value at fault in one
FCNError before anything runs. The flags: tests/test_help.py."""
import json
import math
import os
import shutil

import numpy as onp
import pytest
from mxnet import gluon

from gluon_fcn.app.config import TrainConfig
from gluon_fcn.core.arrays import zeros
from gluon_fcn.core.model import build_fcn
from gluon_fcn.core.training import fit_epochs
from gluon_fcn.errors import FCNError
from gluon_fcn.fast.train import train_fcn

NAN, INF = math.nan, math.inf


@pytest.mark.parametrize('field, value, message', [
    ('lr', NAN, 'lr must be a positive finite number, got nan'),
    ('lr', INF, 'got inf'),
    ('lr', 0, 'got 0'),
    ('lr', '0.1', "got '0.1'"),
    ('wd', -1e-3, 'wd must be a non-negative finite number, got -0.001'),
    ('wd', NAN, 'got nan'),
    ('epochs', 0, 'epochs must be a positive integer, got 0'),
    ('epochs', 2.0, 'got 2.0'),
    ('epochs', True, 'got True'),
    ('batch_size', -4, 'batch_size must be a positive integer'),
    ('crop', (320, 0), 'crop must be two positive multiples of 32'),
    ('crop', (NAN, 480), 'crop must be two positive multiples of 32'),
    ('crop', 320, 'crop must be two numbers, got 320'),
    ('scale', (0.5, INF), 'scale HIGH must be a positive finite number'),
    ('scale', (NAN, 2), 'scale LOW must be a positive finite number'),
    ('scale', (2, 1), 'scale must have LOW <= HIGH'),
    ('seed', -1, 'seed must be an integer from 0 to 4294967295, got -1'),
    ('seed', onp.int64(2 ** 32), 'got 4294967296'),
    ('num_workers', -1, 'num_workers must be a non-negative integer'),
    ('synth_train', 0, 'synth_train must be a positive integer'),
    ('synth_val', NAN, 'synth_val must be a positive integer, got nan'),
    ('synth_scale', -INF, 'synth_scale must be a positive finite number'),
])
def test_train_config_refuses_numbers_that_make_no_sense(field, value,
                                                         message):
    """One line naming the field."""
    with pytest.raises(FCNError) as caught:
        TrainConfig(**{field: value})
    error = str(caught.value)
    assert error.startswith(field) and message in error, error
    assert len(error.splitlines()) == 1


def test_train_config_keeps_the_numbers_that_do():
    config = TrainConfig(lr=1, wd=0, num_workers=0, seed=2 ** 32 - 1,
                         crop=[64, 96], scale=[0.5, 2])
    assert (config.crop, config.scale) == ((64, 96), (0.5, 2))


@pytest.mark.parametrize('change, message', [
    ({'lr': NAN}, 'lr must be a positive finite number, got nan'),
    ({'epochs': 0}, 'epochs must be a positive integer, got 0'),
    ({'crop': [100, 100]}, 'crop must be two positive multiples of 32'),
    ({'batch_size': '32'}, "batch_size must be a positive integer, got '32'"),
])
def test_a_run_config_json_with_such_numbers_names_the_file(
        change, message, tmp_path):
    path = tmp_path / 'config.json'
    path.write_text(json.dumps({**TrainConfig().to_dict(), **change}))
    with pytest.raises(FCNError, match=f'^{path}: {message}'):
        TrainConfig.from_json(str(path))
    path.write_text('[0.1, 5]')
    with pytest.raises(FCNError, match='not a run config'):
        TrainConfig.from_json(str(path))


@pytest.mark.parametrize('num_classes', [0, -1, 2.5, NAN])
def test_build_fcn_needs_a_positive_number_of_classes(num_classes):
    with pytest.raises(FCNError, match='num_classes must be a positive '
                                       'integer'):
        build_fcn(num_classes)


def tiny_trainer(lr=0.1, wd=0.0):
    net = gluon.nn.Dense(1, in_units=1)
    net.initialize()
    return net, gluon.Trainer(net.collect_params(), 'sgd',
                              {'learning_rate': lr, 'wd': wd})


@pytest.mark.parametrize('trainer_args, kwargs, message', [
    ({'lr': NAN}, {}, "the trainer's learning_rate must be a positive "
     'finite number, got nan'),
    ({'lr': -1.0}, {}, "learning_rate must be a positive finite"),
    ({'wd': INF}, {}, "the trainer's optimizer's wd must be a non-negative"),
    ({}, {'num_epochs': 0}, 'num_epochs must be a positive integer'),
    ({}, {'start_epoch': -1}, 'start_epoch must be a non-negative integer'),
    ({}, {'seed': -1}, 'seed must be an integer from 0'),
    ({}, {'num_workers': 0}, 'num_workers must be a positive integer'),
])
def test_fit_epochs_refuses_them_before_a_step(trainer_args, kwargs,
                                               message):
    """The loaders are empty lists: the check comes before any use."""
    net, trainer = tiny_trainer(**trainer_args)
    kwargs = {'num_epochs': 1, **kwargs}
    epochs = kwargs.pop('num_epochs')
    with pytest.raises(FCNError, match=message):
        fit_epochs(net, [], [], None, trainer, epochs, **kwargs)


@pytest.mark.parametrize('kwargs, message', [
    ({'lr': NAN}, 'lr must be a positive finite number, got nan'),
    ({'wd': -0.1}, 'wd must be a non-negative finite number, got -0.1'),
])
def test_train_fcn_refuses_them_before_changing_the_net(kwargs, message):
    net = build_fcn(2)
    with pytest.raises(FCNError, match=message):
        train_fcn(net, [], [], 1, **kwargs)
    assert type(net[-1]) is gluon.nn.Conv2DTranspose  # not accelerated


# the fields of the first config.json (the first TrainConfig, Nov 2026)
FIRST_CONFIG = ('data', 'out', 'epochs', 'batch_size', 'crop', 'lr', 'wd',
                'devices', 'pretrained', 'model_root', 'backbone',
                'classes', 'seed', 'num_workers', 'hybridize', 'data_dir',
                'synth_train', 'synth_val')


def test_a_run_config_from_the_first_version_loads(tiny_run, tmp_path):
    """A run folder whose config.json has only the first version's keys,
    and one key this version does not know: the newer fields take their
    defaults, the unknown key is ignored, and the run predicts as
    before."""
    from gluon_fcn.app.loading import load_run
    run = str(tmp_path / 'run')
    shutil.copytree(tiny_run, run)
    path = os.path.join(run, 'config.json')
    with open(path) as f:
        now = json.load(f)
    old = {k: now[k] for k in FIRST_CONFIG}
    with open(path, 'w') as f:
        json.dump(dict(old, lr_schedule='none'), f)
    config = TrainConfig.from_json(path)
    assert not hasattr(config, 'lr_schedule')
    defaults = TrainConfig()
    for name, value in config.to_dict().items():
        assert value == old.get(name, defaults.to_dict()[name]), name
    assert config.crop == (64, 64)  # a tuple again, as the flag gives
    X = zeros((1, 3, 64, 96))
    X[:] = onp.random.RandomState(0).uniform(-2, 2, X.shape)
    onp.testing.assert_array_equal(load_run(run)[0](X).asnumpy(),
                                   load_run(tiny_run)[0](X).asnumpy())
