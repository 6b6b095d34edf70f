"""The PyTorch chapter beside the MXNet one: the d2l PyTorch FCN with
weights both ways (`torch_port`), the recipes both chapters train with,
side-by-side runs and their verdict, and the measured differences. Needs
the `compare` extra (torch); this file imports nothing, so the command
line reads the defaults below without loading torch.
"""
# the controls of a matched comparison: Gluon runs from its weights times
# (1 + eps x standard normal noise), eps the machine epsilon of the run's
# precision (about one rounding step), one noise seed each
CONTROLS = 3
