"""Beyond the book, pure MXNet: `build_fcn` (backbones x heads), labels and
palettes, datasets, metrics, sliding windows, synthetic data, file I/O.

Every function here works in the MXNet mode of its caller: blocks built
with NumPy mode on take `mxnet.numpy` arrays, blocks built with it off take
`NDArray`s, and arrays come back in the flavour they went in.
"""
