"""An exact, faster forward pass for transposed convolutions whose kernel
is twice their stride (the FCN's upsamplers: 64/32/16, 4/2/1, 16/8/4).

The chapter's `Conv2DTranspose(kernel 2s, stride s, padding p)` scatters a
(2s x 2s) patch per input pixel, and neighbouring patches overlap: oneDNN
runs it as a GEMM followed by an overlapping col2im. Split the kernel into
its four (s x s) quadrants: output block (qy, qx) receives quadrant
(1 - ty, 1 - tx) of the kernel applied to input pixel (qy - 1 + ty,
qx - 1 + tx), for ty, tx in {0, 1}. Stacking the four shifted copies of the
input as channels ((B, 4C, H+1, W+1)) and the quadrants as the input
channels of one weight ((4C, C_out, s, s)) makes it a transposed
convolution whose kernel equals its stride: one GEMM whose patches do not
overlap. Its `pad` crops p from each side, so the output is the chapter's:
(B, C_out, s(H+1) - 2p, s(W+1) - 2p) = (B, C_out, sH, sW) for p = s/2.

Forward only: MXNet 1.9.1's oneDNN deconvolution cannot back-propagate
into a weight computed from a parameter (it fails with 'could not execute
a primitive'), so training keeps the chapter's layer and
`model.optimize_for_inference` switches to this one.
"""
from mxnet.gluon import nn

OFFSETS = ((0, 0), (0, 1), (1, 0), (1, 1))  # (ty, tx) of the four taps


def is_quadrant_split(block):
    """Whether `block` is a transposed convolution this module computes:
    square kernel of twice the stride, 0 <= padding <= stride, a bias."""
    if not isinstance(block, nn.Conv2DTranspose):
        return False
    kw = block._kwargs
    (k, k2), (s, s2), (p, p2) = kw['kernel'], kw['stride'], kw['pad']
    return (k == k2 == 2 * s and s == s2 and p == p2 and 0 <= p <= s and
            kw['dilate'] == (1, 1) and kw['num_group'] == 1 and
            not kw['no_bias'])


class QuadrantConv2DTranspose(nn.Conv2DTranspose):
    """`nn.Conv2DTranspose` computed through the quadrant split: the same
    parameters (names, shapes, values), the same outputs to float32
    rounding, forward only. Switch a trained layer over in place with
    `use_quadrant_split`."""

    def hybrid_forward(self, F, x, weight, bias):
        s, p = self._kwargs['stride'][0], self._kwargs['pad'][0]
        xp = F.np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
        taps = [F.npx.slice(xp, begin=(None, None, ty, tx),
                            end=(None, None, None if ty else -1,
                                 None if tx else -1))
                for ty, tx in OFFSETS]
        # the bias as a fifth tap: a channel of ones whose (s x s) kernel
        # is the bias, cheaper than the deconvolution's own bias addition
        ones = F.np.ones_like(F.npx.slice(taps[0], begin=(None, 0),
                                          end=(None, 1)))
        x4 = F.np.concatenate(taps + [ones], axis=1)  # (B, 4C+1, H+1, W+1)
        quads = [F.npx.slice(weight, begin=(None, None, (1 - ty) * s,
                                            (1 - tx) * s),
                             end=(None, None, (2 - ty) * s, (2 - tx) * s))
                 for ty, tx in OFFSETS]
        b = F.np.broadcast_to(F.np.reshape(bias, (1, -1, 1, 1)),
                              (1, self._channels, s, s))
        w4 = F.np.concatenate(quads + [b], axis=0)  # (4C+1, C_out, s, s)
        return F.npx.deconvolution(x4, w4, kernel=(s, s), stride=(s, s),
                                   pad=(p, p), num_filter=self._channels,
                                   no_bias=True)


def use_quadrant_split(net):
    """Switch every eligible transposed convolution in `net` to the
    quadrant split, in place (parameters untouched); returns the number
    switched. For forward passes only (see the module docstring)."""
    blocks = [net]
    switched = 0
    while blocks:
        block = blocks.pop()
        blocks.extend(block._children.values())
        if type(block) is nn.Conv2DTranspose and is_quadrant_split(block):
            block.__class__ = QuadrantConv2DTranspose
            switched += 1
    return switched
