"""gluon-fcn: Fully Convolutional Networks in MXNet Gluon, as in d2l.

Like d2l 1.0, the package uses MXNet's NumPy interface: importing it turns
NumPy mode on (``npx.set_np()``), which the chapter's code does first too.
"""
from mxnet import npx

npx.set_np()

__version__ = '0.1.0'
