"""Beyond the book, pure MXNet: the layer above gluon_fcn.d2l and v1."""
