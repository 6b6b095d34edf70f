"""PyTorch's `.pth` files of tensors, read and written without PyTorch.

`torch.save(model.state_dict(), path)` writes a zip (PyTorch >= 1.6):
`<name>/data.pkl`, a pickle whose tensors are calls of
`torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)` and
whose storages are persistent ids ('storage', torch.FloatStorage, key,
device, numel), each storage's bytes in `<name>/data/<key>`. Older files
(torchvision's `fcn_resnet101_coco` of 2019) are the legacy format: a
magic number, a protocol number and system info, the same pickle, the
list of storage keys, then each storage as int64 element count and its
bytes, in that order. Both become {name: NumPy array} here.

Only what a state dict holds is unpickled: OrderedDicts, tensors and
storages of the types below. Any other global in the pickle (a module's
class, a function that could run code) is refused, as is anything else
unexpected, with a one-line `FCNError` naming the file.
"""
import collections
import io
import pickle
import zipfile

import numpy as onp

from ..errors import FCNError, read_error
from .files import atomic_path, check_readable

# torch's storage classes -> NumPy dtypes (little-endian, as torch writes)
STORAGES = {'FloatStorage': '<f4', 'DoubleStorage': '<f8',
            'HalfStorage': '<f2', 'LongStorage': '<i8', 'IntStorage': '<i4',
            'ShortStorage': '<i2', 'CharStorage': 'i1', 'ByteStorage': 'u1',
            'BoolStorage': '?'}
REBUILD = ('torch._utils', '_rebuild_tensor_v2')
LEGACY_MAGIC = 0x1950a86a20f9469cfc6c  # torch.serialization.MAGIC_NUMBER
LEGACY_PROTOCOL = 1001


class Storage:
    """A storage's place in the pickle: its dtype, key and size."""

    def __init__(self, dtype, key, numel):
        self.dtype, self.key, self.numel = onp.dtype(dtype), key, numel
        self.data = None  # a flat NumPy array, once read


class Tensor:
    """`_rebuild_tensor_v2`'s arguments, rebuilt once the bytes are read.
    """

    def __init__(self, storage, offset, size, stride, *unused):
        self.storage, self.offset = storage, offset
        self.size, self.stride = tuple(size), tuple(stride)

    def array(self):
        data = self.storage.data
        numbers = self.size + self.stride + (self.offset,)
        if len(self.size) != len(self.stride) or min(numbers) < 0:
            raise ValueError('a tensor of negative sizes or strides')
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size,
                                                             self.stride))
        if 0 not in self.size and last >= data.size:  # as_strided trusts
            raise ValueError('a tensor reaches past its storage')
        view = onp.lib.stride_tricks.as_strided(
            data[self.offset:], self.size,
            [s * data.itemsize for s in self.stride])
        return view.astype(data.dtype.newbyteorder('='), copy=True)


class Unpickler(pickle.Unpickler):
    """A state dict's pickle, with nothing else allowed in it."""

    def __init__(self, file, storages):
        super().__init__(file)
        self.storages = storages  # key -> Storage

    def find_class(self, module, name):
        if (module, name) == ('collections', 'OrderedDict'):
            return collections.OrderedDict
        if (module, name) == REBUILD:
            return Tensor
        if module == 'torch' and name in STORAGES:
            return STORAGES[name]
        raise pickle.UnpicklingError(f'unexpected {module}.{name}')

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid[:1] == ('storage',) and
                len(pid) >= 5 and pid[1] in STORAGES.values()):
            raise pickle.UnpicklingError(f'unexpected reference {pid!r:.60}')
        dtype, key, numel = pid[1], str(pid[2]), pid[4]
        if key not in self.storages:
            self.storages[key] = Storage(dtype, key, numel)
        return self.storages[key]


def flat_state(obj, path):
    """{name: NumPy array} of an unpickled state dict."""
    if not isinstance(obj, dict) or not all(
            isinstance(k, str) and isinstance(v, Tensor)
            for k, v in obj.items()):
        raise FCNError(f'{path}: not a state dict of tensors (a .pth of '
                       '`model.state_dict()`)')
    return collections.OrderedDict((k, v.array()) for k, v in obj.items())


def read_zip(path):
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith('data.pkl')
                   and n.count('/') == 1]
        if len(pickles) != 1:
            raise ValueError('no data.pkl')
        prefix = pickles[0][:-len('data.pkl')]
        order = prefix + 'byteorder'
        if order in names and archive.read(order) != b'little':
            raise ValueError('big-endian tensors')
        storages = {}
        obj = Unpickler(io.BytesIO(archive.read(pickles[0])),
                        storages).load()
        for storage in storages.values():
            raw = archive.read(f'{prefix}data/{storage.key}')
            storage.data = onp.frombuffer(raw, storage.dtype)
    return obj


def read_legacy(path):
    with open(path, 'rb') as f:
        if pickle.load(f) != LEGACY_MAGIC or \
                pickle.load(f) != LEGACY_PROTOCOL:
            raise ValueError('not a PyTorch file')
        pickle.load(f)  # system info: endianness, type sizes
        storages = {}
        obj = Unpickler(f, storages).load()
        for key in pickle.load(f):
            storage = storages[str(key)]
            count = int(onp.frombuffer(f.read(8), '<i8')[0])
            raw = f.read(count * storage.dtype.itemsize)
            if count != storage.numel or \
                    len(raw) != count * storage.dtype.itemsize:
                raise ValueError('a storage is cut short')
            storage.data = onp.frombuffer(raw, storage.dtype)
    return obj


def read_state_dict(path):
    """{name: NumPy array} of the tensors `torch.save(state_dict, path)`
    wrote, in either of PyTorch's formats (module docstring); anything
    else is an `FCNError` naming `path`."""
    check_readable(path, 'weights file')
    try:
        read = read_zip if zipfile.is_zipfile(path) else read_legacy
        obj = read(path)
        return flat_state(obj, path)
    except FCNError:
        raise
    except OSError as e:
        raise read_error(path, e) from e
    except Exception as e:  # zip, pickle, struct and shape faults alike
        raise FCNError(f'{path}: not a PyTorch weights file that can be '
                       f'read ({e})'.replace('\n', ' ')) from e


class Global:
    """A reference to `module.name`, pickled as such without importing it.
    """

    def __init__(self, module, name):
        self.module, self.name = module, name

    def __call__(self, *args):  # pickle asks a reduce function to be one
        raise TypeError('a stand-in')


class Pickler(pickle._Pickler):  # the Python one: its dispatch is a dict
    dispatch = dict(pickle._Pickler.dispatch)

    def save_stand_in(self, obj):
        self.write(pickle.GLOBAL + f'{obj.module}\n{obj.name}\n'.encode())
        self.memoize(obj)

    dispatch[Global] = save_stand_in

    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            name = next(k for k, v in STORAGES.items()
                        if onp.dtype(v) == obj.dtype)
            return ('storage', Global('torch', name), obj.key, 'cpu',
                    obj.numel)
        return None


class SavedTensor:
    def __init__(self, storage, shape):
        self.storage, self.shape = storage, shape

    def __reduce__(self):
        stride = [int(onp.prod(self.shape[i + 1:])) for i in
                  range(len(self.shape))]
        return (Global(*REBUILD), (self.storage, 0, tuple(self.shape),
                                   tuple(stride), False,
                                   collections.OrderedDict()))


def write_state_dict(state, path):
    """Write {name: NumPy array} as `torch.save(state_dict, path)` does
    (the zip format, little-endian), atomically; `torch.load` and
    `read_state_dict` read it."""
    tensors, files = collections.OrderedDict(), {}
    for key, (name, value) in enumerate(state.items()):
        value = onp.asarray(value)
        dtype = value.dtype.newbyteorder('<')
        storage = Storage(dtype, str(key), value.size)
        files[f'archive/data/{key}'] = value.astype(dtype).tobytes()
        tensors[name] = SavedTensor(storage, value.shape)
    data = io.BytesIO()
    Pickler(data, protocol=2).dump(tensors)
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, 'w') as archive:
            archive.writestr('archive/data.pkl', data.getvalue())
            archive.writestr('archive/byteorder', 'little')
            for name, raw in files.items():
                archive.writestr(name, raw)
            archive.writestr('archive/version', '3\n')
    return path
