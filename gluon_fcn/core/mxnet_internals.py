"""Every private attribute of MXNet that gluon-fcn reads, each behind a
function named for what it gives.

MXNet 1.9.1 is frozen, so this is a map of where the package leans on
MXNet's insides, not a layer for other versions: nothing else in
`gluon_fcn` reads an MXNet attribute that starts with an underscore.
`tests/test_mxnet_internals.py` calls each function on a real block, so
a different MXNet fails there first.
"""
from mxnet import gluon


def cached_graph(block):
    """(input symbols, output symbol) of a hybridized `HybridBlock` that
    has run once: the graph it traced (`_cached_graph`)."""
    inputs, sym = block._cached_graph
    return inputs, sym


def child_blocks(block):
    """{name: child} of the blocks registered under `block`, in order
    (`_children`); the names are those `register_child` took."""
    return dict(block._children)


def hybrid_flags(block):
    """(active, {flag: value}) that `block.hybridize` was last called
    with (`_active`, `_flags`), to hybridize a copy alike."""
    return block._active, dict(block._flags)


def conv_settings(layer):
    """The operator attributes of a convolution or transposed convolution
    layer (`_kwargs`): 'kernel', 'stride', 'pad', 'dilate', 'num_group',
    'no_bias', 'layout', and for a transposed one 'adj', as tuples."""
    return dict(layer._kwargs)


def conv_channels(layer):
    """(channels, in_channels) a convolution layer was built with
    (`_channels`, `_in_channels`; 0 where deferred to the first input)."""
    return layer._channels, layer._in_channels


def structured_params(block):
    """{structured name: Parameter} of `block` and its children, the
    names by position in the tree ('0.weight', 'features.3.bias'), as
    `save_parameters` writes them (`_collect_params_with_prefix`)."""
    return block._collect_params_with_prefix()


def repo_file_url(namespace, filename):
    """The URL gluon downloads a hosted file from, honouring
    `MXNET_GLUON_REPO` (`gluon.utils._get_repo_file_url`)."""
    return gluon.utils._get_repo_file_url(namespace, filename)


def dataset_arrays(dataset):
    """(data, label) of a gluon vision dataset held in memory (MNIST,
    CIFAR): all its images and labels at once (`_data`, `_label`), where
    item by item would take a call an image."""
    return dataset._data, dataset._label
