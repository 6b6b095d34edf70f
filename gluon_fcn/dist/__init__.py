"""Distributed training on MXNet's parameter server: the worker's side
(`worker`) and `gluon-fcn launch` (`launch`).
"""
