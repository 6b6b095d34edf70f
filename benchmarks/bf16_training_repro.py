"""bf16 training of the chapter's FCN with MXNet 1.9.1's AMP: where it
fails, and the recipe that trains (issue 14).

    python benchmarks/bf16_training_repro.py [CASE ...]

Each case runs in its own process (AMP patches MXNet's operators for the
whole process, and one case crashes it) and prints one line:

- chapter: the chapter's layers, hybridized: the process dies with SIGSEGV
  in the backward pass of the 64/32 `Conv2DTranspose` (MXNet's
  `MKLDNNDeconvBwd::Execute`, oneDNN's float32 deconvolution, whose input
  AMP casts back from bfloat16). Imperatively the same net trains.
- order: `amp.init` before gluon-fcn's native operators are loaded
  (`mx.library.load`, which `accelerate` does): loading regenerates
  MXNet's operator functions, AMP's casts are lost and the net silently
  trains in float32.
- quadrant: AMP after the load: the quadrant split's `fcn_upsample`
  (float32 only) gets the bfloat16 scores: "Error in operator
  ..._fcn_upsample0: ... Error calling InferType for custom operator
  'fcn_upsample'" (before it trained, the split's `npx.fully_connected`,
  which AMP does not patch, failed alike: "expected bfloat16, got
  float32").
- recipe: AMP after the load, and the upsampler's input cast to float32
  (a subclass here): trains, the convolutions in bfloat16 (AMX kernels
  where allowed: `DNNL_VERBOSE=1` shows `avx512_core_amx_bf16`).
- float32: the same net, weights and steps without AMP. The losses were
  within 1.3% of the recipe's here (64x64, batch 2) and within 0.05% at
  320x480; a step took 0.28 s an image against 0.39 in float32 (one core,
  CPU time, Xeon with AMX).
"""
import subprocess
import sys

CASES = ('chapter', 'order', 'quadrant', 'recipe', 'float32')
SHAPE = (2, 3, 64, 64)


def train(net, loss, steps=2, mixed=True):
    """`steps` SGD steps on a fixed random batch (`mixed`: with AMP's
    trainer): the losses."""
    import mxnet as mx
    from mxnet import autograd, gluon
    from mxnet.contrib import amp
    trainer = gluon.Trainer(net.collect_params(), 'sgd',
                            {'learning_rate': 0.1})
    if mixed:
        amp.init_trainer(trainer)
    mx.random.seed(0)
    X = mx.nd.random.uniform(shape=SHAPE)
    y = mx.nd.random.randint(0, 21, shape=SHAPE[:1] + SHAPE[2:])
    losses = []
    for _ in range(steps):
        with autograd.record():
            l = loss(net(X), y.astype('float32'))
        l.backward()
        trainer.step(SHAPE[0])
        losses.append(float(l.mean().asscalar()))
    return losses


def first_conv_dtype(net):
    """The dtype the first convolution of `net` computes in, run alone."""
    import mxnet as mx

    from gluon_fcn.fast.precision import dtype_name
    return dtype_name(net[1](mx.nd.ones(SHAPE)).dtype)


def amp_after_load():
    """gluon-fcn's native operators loaded, then AMP in bfloat16."""
    from mxnet.contrib import amp

    from gluon_fcn.fast import native
    native.load()
    amp.init(target_dtype='bfloat16')


def case_chapter():
    from mxnet.contrib import amp

    from gluon_fcn.core.model import build_fcn
    from gluon_fcn.core.training import PixelSoftmaxCELoss
    amp.init(target_dtype='bfloat16')
    net = build_fcn(21)
    net.hybridize()
    return f'trained: losses {train(net, PixelSoftmaxCELoss())}'


def case_order():
    from mxnet.contrib import amp

    from gluon_fcn.core.model import build_fcn
    from gluon_fcn.fast import accelerate, make_fused_loss
    amp.init(target_dtype='bfloat16')
    net = accelerate(build_fcn(21))  # loads the native operators
    train(net, make_fused_loss('d2l'))
    return f'trains, its first convolution in {first_conv_dtype(net)}'


def case_quadrant():
    from gluon_fcn.core.model import build_fcn
    from gluon_fcn.fast import accelerate, make_fused_loss
    amp_after_load()
    net = accelerate(build_fcn(21))
    net.hybridize(static_alloc=True)
    return f'trained: losses {train(net, make_fused_loss("d2l"))}'


def case_recipe():
    from gluon_fcn.core.arrays import as_legacy, like
    from gluon_fcn.core.model import build_fcn
    from gluon_fcn.fast import make_fused_loss
    from gluon_fcn.fast.upsample import QuadrantConv2DTranspose

    class Float32Quadrants(QuadrantConv2DTranspose):
        """The quadrant split on float32 scores, whatever AMP made them."""

        def hybrid_forward(self, F, x, weight, bias):
            x = like(F.amp_cast(as_legacy(x), dtype='float32'), x)
            return super().hybrid_forward(F, x, weight, bias)

    amp_after_load()
    net = build_fcn(21)
    net.register_child(Float32Quadrants.from_layer(net[-1]),
                       list(net._children)[-1])
    net.hybridize(static_alloc=True)
    losses = train(net, make_fused_loss('d2l'), steps=5)
    dtype = first_conv_dtype(net)
    return (f'trained, its first convolution in {dtype}: losses '
            f'{[round(v, 4) for v in losses]}')


def case_float32():
    from gluon_fcn.core.model import build_fcn
    from gluon_fcn.fast import accelerate, make_fused_loss
    net = accelerate(build_fcn(21))
    net.hybridize(static_alloc=True)
    losses = train(net, make_fused_loss('d2l'), steps=5, mixed=False)
    return f'trained: losses {[round(v, 4) for v in losses]}'


def run_case(case):
    """`case` in a child process: (exit status, its last line)."""
    proc = subprocess.run([sys.executable, __file__, '--child', case],
                          capture_output=True, text=True)
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    last = next((line for line in reversed(lines)
                 if 'Error' in line or line.startswith(case)),
                lines[-1] if lines else '')
    return proc.returncode, last


def main(argv):
    if argv[:1] == ['--child']:
        import gluon_fcn  # noqa: F401  (AMX before MXNet loads)
        import mxnet as mx
        mx.random.seed(0)  # the same weights in every case
        print(f'{argv[1]}: {globals()["case_" + argv[1]]()}', flush=True)
        return 0
    for case in argv or CASES:
        status, line = run_case(case)
        signal = f'killed by signal {-status}' if status < 0 else \
            f'exit {status}'
        print(f'{case} ({signal}): {line}')
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
