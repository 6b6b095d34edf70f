"""The PyTorch chapter beside the MXNet one: the d2l PyTorch FCN with
weights both ways (`torch_port`), the recipes both chapters train with,
side-by-side runs and the measured differences. Needs the `compare` extra
(torch).
"""
