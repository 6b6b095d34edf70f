"""The one configuration of a training run, with the textbook's defaults.

`TrainConfig` holds every default and a line of help per field; the
`train` command's flags are generated from it (`add_config_args`), and a
run folder keeps the final config as `config.json`. Its numbers are
checked however it is made (`check`: NaN, infinities, and zero or
negative counts, sizes and rates are refused, naming the field, or the
flag where they came from one). Parsers for the flags' values live here
too.
"""
import dataclasses
import math
import os

from ..core import numeric
from ..core.files import load_json
from ..core.labels import LABEL_CONVENTIONS
from ..core.model import BACKBONES, HEADS, UPSAMPLER_INITS
from ..d2l import VOC_CLASSES
from ..errors import FCNError

# what `train --kvstore` takes; dist_* need a job made by `launch`
KVSTORES = ('device', 'local', 'dist_sync', 'dist_device_sync',
            'dist_async')


def option(default, help, **argparse):
    """A config field: its default, one line of help, `check(name, value)`
    (the value, else an FCNError naming `name`) and argparse extras
    (`choices`, `metavar`, `parse` for values that are not plain)."""
    return dataclasses.field(default=default,
                             metadata=dict(help=help, **argparse))


def parse_pair(text, flag):
    """'320,480' -> (320, 480), both positive."""
    try:
        h, w = (int(v) for v in text.split(','))
    except ValueError:
        raise FCNError(f'{flag} {text}: write HEIGHT,WIDTH, e.g. 320,480')
    if h <= 0 or w <= 0:
        raise FCNError(f'{flag} {text}: both sides must be positive')
    return h, w


def parse_crop(text, flag='--crop'):
    """'320,480' -> (320, 480); both sides multiples of 32."""
    h, w = parse_pair(text, flag)
    if h % 32 or w % 32:
        raise FCNError(f'{flag} {text}: both sides must be positive '
                       'multiples of 32, since the FCN downsamples by 32 '
                       'and upsamples by 32')
    return h, w


def parse_classes(text, flag='--classes'):
    """'background,object' -> ('background', 'object')."""
    classes = tuple(c.strip() for c in text.split(','))
    if len(classes) < 2 or not all(classes):
        raise FCNError(f'{flag} {text}: give at least two names, '
                       'comma-separated, background first')
    return classes


def parse_scale(text, flag='--scale'):
    """'0.5,2.0' -> (0.5, 2.0)."""
    try:
        low, high = (float(v) for v in text.split(','))
    except ValueError:
        raise FCNError(f'{flag} {text}: write LOW,HIGH, e.g. 0.5,2.0')
    if not (0 < low <= high and math.isfinite(high)):
        raise FCNError(f'{flag} {text}: need 0 < LOW <= HIGH, both finite')
    return low, high


def pair(name, value):
    """`value` as a tuple, if it is two of anything (a JSON list, say)."""
    if not (isinstance(value, (tuple, list)) and len(value) == 2):
        raise FCNError(f'{name} must be two numbers, got '
                       f'{numeric.shown(value)}')
    return tuple(value)


def check_crop(name, value):
    """Two positive integers, multiples of 32 (`parse_crop`)."""
    h, w = pair(name, value)
    if not all(numeric.is_integer(v) and v > 0 and v % 32 == 0
               for v in (h, w)):
        raise FCNError(f'{name} must be two positive multiples of 32, got '
                       f'{list(value)}')
    return h, w


def check_scale(name, value):
    """Finite LOW <= HIGH, both positive (`parse_scale`)."""
    low, high = pair(name, value)
    numeric.real(f'{name} LOW', low)
    numeric.real(f'{name} HIGH', high)
    if low > high:
        raise FCNError(f'{name} must have LOW <= HIGH, got {list(value)}')
    return low, high


def non_negative_count(name, value):
    return numeric.count(name, value, low=0)


def non_negative_real(name, value):
    return numeric.real(name, value, positive=False)


@dataclasses.dataclass
class TrainConfig:
    """Everything a run depends on; the defaults are the textbook's."""
    data: str = option('synthetic', "'synthetic' (made offline), 'voc2012' "
                       '(downloaded) or a VOC-layout folder')
    out: str = option(os.path.join('runs', 'fcn'), 'the run folder',
                      metavar='DIR')
    epochs: int = option(5, 'training epochs (the chapter: 5)',
                         check=numeric.count)
    batch_size: int = option(32, 'examples a step, over all devices',
                             check=numeric.count)
    crop: tuple = option((320, 480), 'random crop HEIGHT,WIDTH, multiples '
                         'of 32', parse=parse_crop, metavar='H,W',
                         check=check_crop)
    lr: float = option(0.1, 'SGD learning rate', check=numeric.real)
    wd: float = option(1e-3, 'SGD weight decay', check=non_negative_real)
    devices: str = option('auto', "'auto' (every GPU, else the CPU), or "
                          'e.g. cpu:0,cpu:1 or gpu:0,gpu:1', metavar='LIST')
    pretrained: bool = option(False, "the backbone's ImageNet weights "
                              'from the Gluon model store')
    model_root: str = option(None, 'the Gluon model store folder '
                             '(default: ~/.mxnet/models)', metavar='DIR')
    backbone: str = option('resnet18_v2', 'the feature extractor (the '
                           "chapter's: resnet18_v2)", choices=BACKBONES)
    head: str = option('32s', "'32s' (the chapter) or the FCN paper's skip "
                       'nets', choices=HEADS)
    upsampler_init: str = option('bilinear', 'how the transposed '
                                 "convolutions start (the chapter's: "
                                 'bilinear)', choices=UPSAMPLER_INITS)
    classes: tuple = option(None, "class names, comma-separated, in index "
                            "order (default: the data's classes.txt, else "
                            "VOC's 21)", parse=parse_classes, metavar='NAMES')
    labels: str = option('d2l', "'d2l': the VOC border is background (the "
                         "textbook); 'voc': it is ignored",
                         choices=LABEL_CONVENTIONS)
    flip: bool = option(False, 'augment with random horizontal flips '
                        '(the chapter: off)')
    scale: tuple = option(None, 'augment with random rescaling LOW,HIGH '
                          'before the crop, e.g. 0.5,2.0 (default: off, as '
                          'in the chapter)', parse=parse_scale,
                          metavar='LOW,HIGH', check=check_scale)
    seed: int = option(0, 'seed of every random generator',
                       check=numeric.seed)
    num_workers: int = option(0, 'data loader processes', flag='--workers',
                              check=non_negative_count)
    hybridize: bool = option(True, 'run the net imperatively instead of '
                             'compiling it into a graph (slower; easier to '
                             'debug)')
    static_memory: bool = option(False, "plan the graph's memory once "
                                 '(static_alloc): faster on a CPU, and a '
                                 'higher peak of memory (README)')
    chapter_layers: bool = option(False, "the chapter's Conv2DTranspose "
                                  'and loss instead of the fast CPU '
                                  'operators (same values, slower)')
    precision: str = option('fp32', "training's arithmetic; 'bf16': the "
                            'convolutions in bfloat16, the weights, loss '
                            'and upsampler in float32 (CPU with AMX or '
                            'AVX-512 BF16; a line says where it is '
                            'slower)', choices=('fp32', 'bf16'))
    data_dir: str = option('data', "where 'synthetic' and 'voc2012' are "
                           'kept', metavar='DIR')
    synth_train: int = option(200, 'synthetic training images',
                              check=numeric.count)
    synth_val: int = option(50, 'synthetic validation images',
                            check=numeric.count)
    synth_scale: float = option(1.0, 'scale of the synthetic image sizes '
                                '(the demo: 0.5)', metavar='X',
                                check=numeric.real)
    kvstore: str = option('device', "where gradients meet: 'device', "
                          "'local', or MXNet's parameter server (dist_*, "
                          'in a job started by gluon-fcn launch)',
                          choices=KVSTORES)
    keep_checkpoints: int = option(2, "the newest epochs' checkpoints "
                                   'kept in the run folder, 0 for all '
                                   '(--resume needs the newest only)',
                                   check=non_negative_count)

    def __post_init__(self):
        """Check the numbers, naming the field at fault."""
        for f in dataclasses.fields(self):
            setattr(self, f.name, check(f, getattr(self, f.name), f.name))

    @classmethod
    def from_json(cls, path):
        """The config a run folder saved; one that is not a config, or
        holds numbers that make no sense, is an FCNError naming `path`."""
        saved = load_json(path)
        if not isinstance(saved, dict):
            raise FCNError(f'{path}: not a run config (a JSON object)')
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in saved.items() if k in fields}
        if isinstance(values.get('classes'), list):
            values['classes'] = tuple(values['classes'])
        values['classes'] = values.get('classes') or VOC_CLASSES
        try:
            return cls(**values)
        except FCNError as e:
            raise FCNError(f'{path}: {e}') from e

    def to_dict(self):
        d = dataclasses.asdict(self)
        d.update(crop=list(self.crop),
                 classes=self.classes and list(self.classes))
        return d


def check(field, value, name):
    """`value` of config field `field`, checked by its `check` (an
    FCNError naming `name`); None stays where None is the default."""
    checker = field.metadata.get('check')
    if checker is None or (value is None and field.default is None):
        return value
    return checker(name, value)


def flag_of(field):
    return field.metadata.get('flag') or \
        '--' + field.name.replace('_', '-')


def add_config_args(parser, config_class=TrainConfig, names=None):
    """One flag per field of `config_class` (or of `names`), with its
    default and help; values stay strings where a `parse` applies, and
    `config_from_args` parses them."""
    for f in dataclasses.fields(config_class):
        if names is not None and f.name not in names:
            continue
        meta, flag = f.metadata, flag_of(f)
        if f.type == 'bool' or isinstance(f.default, bool):
            if f.default:
                parser.add_argument(f'--no-{flag[2:]}', dest=f.name,
                                    action='store_false', help=meta['help'])
            else:
                parser.add_argument(flag, dest=f.name, action='store_true',
                                    help=meta['help'])
            continue
        kwargs = {'default': f.default, 'help': meta['help'],
                  'dest': f.name}
        if 'parse' in meta:
            kwargs['type'] = str
            if f.default is not None:
                kwargs['default'] = ','.join(map(str, f.default))
        elif f.default is not None:
            kwargs['type'] = type(f.default)
            if kwargs['type'] is int:
                kwargs['metavar'] = 'N'
        else:
            kwargs['type'] = str
        for key in ('choices', 'metavar'):
            if key in meta:
                kwargs[key] = meta[key]
        parser.add_argument(flag, **kwargs)


def config_from_args(args, config_class=TrainConfig):
    """The config of the fields `args` has, values parsed and checked
    (an FCNError naming the flag)."""
    values = {}
    for f in dataclasses.fields(config_class):
        if not hasattr(args, f.name):
            continue
        value = getattr(args, f.name)
        if 'parse' in f.metadata and isinstance(value, str):
            value = f.metadata['parse'](value, flag_of(f))
        values[f.name] = check(f, value, flag_of(f))
    return config_class(**values)
