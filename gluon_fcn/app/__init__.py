"""The application: the CLI, the config, run folders and checkpoints,
fit / evaluate / predict over run folders, dataset checks and figures.
The only layer that knows flags, run folders and printing.
"""
