"""torchvision's model code, here where its compiled operators do not load.

The registry's torchvision (0.28) is built for CUDA; beside the CPU torch
of the `compare` extra its `__init__` fails (`operator torchvision::nms
does not exist`), though its model code is plain Python. Entered as a
package without running that `__init__`, `torchvision.models` imports:
`segmentation()` registers a `torchvision` module whose `__path__` is
the installed package's folder, once, and imports
`torchvision.models.segmentation` through it. The parity tests of
`gluon_fcn.core.torchvision_fcn` run torchvision's own FCN this way.
"""
import importlib
import importlib.util
import sys
import types

import torch  # noqa: F401  (without torch: ModuleNotFoundError 'torch')


def segmentation():
    """`torchvision.models.segmentation`; ImportError where torchvision
    is not installed."""
    if 'torchvision' not in sys.modules:
        spec = importlib.util.find_spec('torchvision')
        if spec is None or not spec.submodule_search_locations:
            raise ImportError("No module named 'torchvision'")
        package = types.ModuleType('torchvision')
        package.__path__ = list(spec.submodule_search_locations)
        package.__spec__ = spec
        sys.modules['torchvision'] = package
    return importlib.import_module('torchvision.models.segmentation')
