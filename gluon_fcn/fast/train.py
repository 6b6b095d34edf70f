"""Training runs without a run folder, for lessons and experiments: an
FCN from `build_fcn` trained as the chapter trains it, on the fast CPU
path, and its history returned.
"""
from mxnet import gluon

from ..core import numeric
from ..core.training import fit_epochs
from ..errors import FCNError
from .upsample import accelerate
from .loss import make_fused_loss
from .mixed import training_refusal, use_bf16_convolutions


def train_fcn(net, train_iter, test_iter, num_epochs, lr=0.1, wd=1e-3,
              optimizer='sgd', labels='d2l', seed=0, progress=True,
              static_memory=False, precision='fp32'):
    """Train `net` (from `build_fcn`) in place and return its `History`.

    The chapter's training (:numref:`sec_fcn`) on the devices `net` is
    on, made fast on a CPU: `accelerate(net)`, hybridized (as `gluon-fcn
    train`: memory planned each step, unless `static_memory`), the fused
    chapter loss, `fit_epochs` re-seeded with `seed +
    epoch` at every epoch. The trainer takes the parameters that have
    gradients, so a frozen backbone (`grad_req` 'null',
    `core.model.backbone_params`) stays as it is.

    Parameters
    ----------
    net : an FCN from `build_fcn`, not hybridized yet.
    train_iter, test_iter : DataLoaders of (B, 3, h, w) images and
        (B, h, w) class indices (d2l's `load_data_voc`).
    num_epochs : int
    lr, wd : float
        Learning rate and weight decay; the chapter's 0.1 and 1e-3.
    optimizer : str
        A Gluon optimizer name: 'sgd' (the chapter) or 'adam' (Keras's).
    labels : 'd2l' or 'voc'
        'voc' leaves pixels labelled 255 out of the loss.
    seed : int
    progress : bool
        A tqdm bar per epoch.
    static_memory : bool
        `static_alloc`: faster, for more memory at its peak (README,
        results log, "Speed against PyTorch": the static-memory row).
    precision : 'fp32' or 'bf16'
        'bf16': mixed precision, the convolutions in bfloat16 and the
        Parameters, loss and upsampler in float32 (`fast.mixed`); an
        FCNError where this machine does not run it, a `PrecisionNote`
        where it is known to be slower than float32.

    Returns
    -------
    History : per epoch loss, train/test accuracy and test mIoU.
    """
    numeric.real('lr', lr)  # before the net is changed
    numeric.real('wd', wd, positive=False)
    devices = list(net.collect_params().values())[0].list_ctx()
    refusal = training_refusal(precision, devices)
    if refusal:
        raise FCNError(f'precision {precision!r}: {refusal}')
    accelerate(net)
    if precision == 'bf16':
        use_bf16_convolutions(net)
    net.hybridize(static_alloc=static_memory)
    params = {name: param for name, param in net.collect_params().items()
              if param.grad_req != 'null'}
    trainer = gluon.Trainer(params, optimizer,
                            {'learning_rate': lr, 'wd': wd})
    return fit_epochs(net, train_iter, test_iter, make_fused_loss(labels),
                      trainer, num_epochs, devices, seed=seed,
                      progress=progress, convention=labels)
