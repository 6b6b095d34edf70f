"""The chapter's net made fast on a CPU for inference: fused by oneDNN,
in a precision (`optimize_for_inference`).
"""
from .auto import choose_precision
from .precision import inference_net, upsampler_index, usable_precision
from .upsample import accelerate


def optimize_for_inference(net, X, quadrants=True, precision='fp32',
                           calib_data=None, int8_cache=None, choice=None):
    """The net to run forward passes of `net` (from `build_fcn`) on
    batches shaped like `X`, fast: the transposed convolutions computed
    through the quadrant split (with `quadrants`), the rest as one graph
    through MXNet's oneDNN backend, which fuses convolution, BatchNorm,
    ReLU and the residual sums into one kernel, with static memory and
    shapes. For inference only: BatchNorm is folded with its running
    statistics. `net` may be changed (accelerated, hybridized); use the
    net returned.

    precision : 'fp32' (outputs equal the plain net's to float32
        rounding), 'bf16' or 'int8' (the backbone in that precision, the
        upsampler in float32; `gluon_fcn.fast.precision`), or 'auto'
        (the fastest of them on this CPU that keeps 99% of the pixels of
        `calib_data` in their float32 class, measured;
        `gluon_fcn.fast.auto`). Where the machine cannot run it, a
        `PrecisionNote` warning and float32; where it runs slower than
        float32 (bf16 without AMX), a `PrecisionNote` and that precision.
    calib_data : (N, 3, H, W) images, a few training ones (NumPy, an
        `NDArray` or an `mxnet.numpy` array, in either mode), or a
        function returning them; int8 only (its scales are calibrated on
        them), unless found in `int8_cache`.
    int8_cache : str, optional
        File prefix of the int8 body (calibrated once, saved there).
    choice : `fast.auto.Choice`, optional
        With 'auto': a choice measured before for this net on this CPU,
        taken instead of measuring.

    Returns an `InferenceFCN` for the chapter's net on the CPU (its
    `precision` the one it runs, its `choice` what 'auto' measured); else
    (skip heads, a GPU: float32 only) `net` itself, fused in place.
    """
    precision = usable_precision(precision, X.context, net)
    if quadrants:
        accelerate(net)
    if X.context.device_type != 'cpu' or upsampler_index(net) is None:
        net.optimize_for(X, backend='MKLDNN', static_alloc=True,
                         static_shape=True)
        return net
    if precision == 'auto':
        return choose_precision(net, X, calib_data, int8_cache, choice)
    return inference_net(net, X, precision, calib_data, int8_cache)
