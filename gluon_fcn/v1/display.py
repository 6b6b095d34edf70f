"""The figures of d2lzh 1.0.0: `set_figsize`, `show_images` and `plt`.

d2lzh imports pyplot when it is imported; here pyplot is imported on
first use (``d2l.plt`` or a call), so importing the package leaves a
process's matplotlib backend alone, whatever it is.
"""
import importlib


def __getattr__(name):
    """``plt``, as d2lzh exports it: pyplot, imported on first use."""
    if name == 'plt':
        return importlib.import_module('matplotlib.pyplot')
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def set_figsize(figsize=(3.5, 2.5)):
    """Set the default size of matplotlib figures, in inches.

    Defined in d2lzh 1.0.0 (d2l-zh v1 section 3.2). d2lzh also switches
    IPython's inline figures to SVG (``use_svg_display``), through an
    IPython function that IPython 9 no longer has; this layer imports no
    IPython, so figures keep the inline backend's format (PNG).
    """
    from matplotlib import pyplot as plt
    plt.rcParams['figure.figsize'] = figsize


def show_images(imgs, num_rows, num_cols, scale=2):
    """Plot images on a grid, row by row, without axis ticks.

    Defined in d2lzh 1.0.0 (d2l-zh v1 section 9.1).

    Parameters
    ----------
    imgs : list of NDArray
        At least ``num_rows * num_cols`` images, (H, W, 3) or (H, W).
    num_rows, num_cols : int
        Both above 1, as in d2lzh, which indexes ``axes[i][j]``.
    scale : float
        Inches per image.

    Returns
    -------
    numpy.ndarray of Axes
        (num_rows, num_cols).
    """
    from matplotlib import pyplot as plt
    figsize = (num_cols * scale, num_rows * scale)
    _, axes = plt.subplots(num_rows, num_cols, figsize=figsize)
    for i in range(num_rows):
        for j in range(num_cols):
            axes[i][j].imshow(imgs[i * num_cols + j].asnumpy())
            axes[i][j].axes.get_xaxis().set_visible(False)
            axes[i][j].axes.get_yaxis().set_visible(False)
    return axes
