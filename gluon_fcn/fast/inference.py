"""The chapter's net made fast on a CPU, for training and for inference.
"""
from .upsample import use_quadrant_split


def accelerate(net):
    """Compute `net` (from `build_fcn`) faster on a CPU, in place: its
    transposed convolutions through the quadrant split, with the same
    parameters, outputs and gradients (`gluon_fcn.fast.upsample`). It
    compiles the native operators on first use; where they cannot run (no
    compiler, a GPU) the net is left as it is. Call it before
    `hybridize`. Returns `net`."""
    use_quadrant_split(net)
    return net


def optimize_for_inference(net, X, quadrants=True):
    """Make `net` fast for forward passes on batches shaped like `X`: the
    transposed convolutions computed through the quadrant split (with
    `quadrants`), and MXNet's oneDNN subgraph backend fusing convolution,
    BatchNorm and ReLU into one kernel, with static memory and shapes.
    Outputs equal the plain net's to float32 rounding; parameters keep
    their names and values. For inference only: BatchNorm is folded with
    its running statistics. Returns `net`."""
    if quadrants:
        accelerate(net)
    net.optimize_for(X, backend='MKLDNN', static_alloc=True,
                     static_shape=True)
    return net
