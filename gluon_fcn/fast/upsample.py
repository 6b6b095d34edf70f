"""An exact, faster transposed convolution for kernels twice their stride
(the FCN's upsamplers: 64/32/16, 4/2/1, 16/8/4), for training and
inference.

The chapter's `Conv2DTranspose(kernel 2s, stride s, padding p)` scatters a
(2s x 2s) patch per input pixel, and neighbouring patches overlap: oneDNN
runs it as a GEMM followed by an overlapping col2im, slowly. Split the
kernel into its four (s x s) quadrants instead: output block (qy, qx) of
the uncropped (s(H+1), s(W+1)) image receives quadrant (a, b) of the
kernel applied to input pixel (qy - a, qx - b), for a, b in {0, 1}. Each
block is then its four neighbouring input pixels (the taps, 4 C_in
numbers) times a (4 C_in, C_out s s) rearrangement of the weight, plus
the bias, cropped by p at the image's borders.

`fcn_upsample` (`gluon_fcn.fast.native`) computes that block by block,
writing each into the output, and its backward pass reads the output's
gradient block by block: the (B, H+1, W+1, C_out s s) blocks never go
through memory, forward or backward (at batch 32 and 320x480 they would
hold 484 MB, kept from the forward pass to the backward one, and as much
again for their gradient). For strides it has no kernel for, or where
the parameters' gradients are added to (grad_req 'add'), the blocks come
from one dense GEMM (`FullyConnected`) and are laid out by
`fcn_blocks_to_image`.

The layer keeps `Conv2DTranspose`'s parameters (names, shapes, values), so
checkpoints load either way. MXNet's oneDNN deconvolution cannot itself
run the split in training: it fails ('could not execute a primitive', or a
crash) when back-propagating into any weight computed from a parameter.
"""
import numpy as onp
from mxnet.gluon import nn

from ..core.arrays import as_legacy, as_numpy, like
from ..core.mxnet_internals import (child_blocks, conv_channels,
                                    conv_settings, hybrid_flags)
from . import native


def is_quadrant_split(block):
    """Whether `block` is a transposed convolution this module computes:
    square kernel of twice the stride, 0 <= padding < stride (padding =
    stride empties a 1x1 input, which MXNet's external operators cannot
    pass), a bias."""
    if not isinstance(block, nn.Conv2DTranspose):
        return False
    kw = conv_settings(block)
    (k, k2), (s, s2), (p, p2) = kw['kernel'], kw['stride'], kw['pad']
    return (k == k2 == 2 * s and s == s2 and p == p2 and 0 <= p < s and
            kw['dilate'] == (1, 1) and kw['num_group'] == 1 and
            not kw['no_bias'] and kw.get('adj', (0, 0)) == (0, 0) and
            kw['layout'] == 'NCHW' and block.weight.shape[0] > 0)


class QuadrantConv2DTranspose(nn.Conv2DTranspose):
    """`nn.Conv2DTranspose` computed through the quadrant split: the same
    parameters, the same outputs and gradients to float32 rounding. It
    computes as the plain layer in other dtypes. `from_layer` makes one
    that shares a chapter layer's parameters; `use_quadrant_split` puts
    such layers in place of a net's."""

    @classmethod
    def from_layer(cls, layer):
        """A quadrant-split layer holding `layer`'s own Parameters (same
        names, so checkpoints load either way)."""
        return same_layer_as(cls, layer)

    def hybrid_forward(self, F, x, weight, bias):
        if onp.dtype(self.weight.dtype) != onp.float32:
            return super().hybrid_forward(F, x, weight, bias)
        s, p = self.stride_pad()
        if s in FUSED_STRIDES and 'add' not in (self.weight.grad_req,
                                                self.bias.grad_req):
            out = F.fcn_upsample(as_legacy(x), as_legacy(weight),
                                 as_legacy(bias), stride=s, pad=p)
            return like(out, x)
        return self.gemm_forward(F, x, weight, bias)

    def stride_pad(self):
        """(stride, padding), each the same along both axes."""
        kw = conv_settings(self)
        return kw['stride'][0], kw['pad'][0]

    def gemm_forward(self, F, x, weight, bias):
        """The blocks as one GEMM, laid out by `fcn_blocks_to_image`."""
        ref = x  # the caller's flavour, legacy or NumPy
        x, weight, bias = (as_numpy(v) for v in (x, weight, bias))
        s, p = self.stride_pad()
        c_in, c_out = self.weight.shape[:2]
        x = F.np.pad(F.np.transpose(x, (0, 2, 3, 1)),  # (B, H+2, W+2, C)
                     ((0, 0), (1, 1), (1, 1), (0, 0)))
        taps = [F.npx.slice(x, begin=(None, 1 - a, 1 - b, None),
                            end=(None, -a or None, -b or None, None))
                for a in (0, 1) for b in (0, 1)]
        taps = F.np.concatenate(taps, axis=-1)  # (B, H+1, W+1, 4 C_in)
        w = F.np.reshape(weight, (c_in, c_out, 2, s, 2, s))  # a ry b rx
        w = F.np.reshape(F.np.transpose(w, (1, 3, 5, 2, 4, 0)),
                         (c_out * s * s, 4 * c_in))
        blocks = F.npx.fully_connected(  # (B, H+1, W+1, C_out s s)
            taps, w, F.np.repeat(bias, s * s), num_hidden=c_out * s * s,
            flatten=False)
        out = F.fcn_blocks_to_image(blocks.as_nd_ndarray(), channels=c_out,
                                    stride=s, pad=p)  # (B, C_out, sH, sW)
        return like(out, ref)


FUSED_STRIDES = (2, 4, 8, 16, 32, 64)  # those `fcn_upsample` computes


def same_layer_as(cls, layer, **kwargs):
    """A convolution or transposed convolution of class `cls` (with
    `kwargs`) holding `layer`'s own Parameters and settings."""
    kw = conv_settings(layer)
    channels, in_channels = conv_channels(layer)
    new = cls(channels, kernel_size=kw['kernel'], strides=kw['stride'],
              padding=kw['pad'], dilation=kw['dilate'],
              groups=kw['num_group'], layout=kw['layout'],
              use_bias=not kw['no_bias'], in_channels=in_channels,
              prefix=layer.prefix, params=layer.params, **kwargs)
    new.act = layer.act
    active, flags = hybrid_flags(layer)
    new.hybridize(active, **flags)
    return new


def find_layers(net, wanted):
    """[(parent, key, child)] of every block of `net` for which
    `wanted(child)`."""
    blocks, found = [net], []
    while blocks:
        block = blocks.pop()
        for key, child in child_blocks(block).items():
            blocks.append(child)
            if wanted(child):
                found.append((block, key, child))
    return found


def replace_layers(found, make):
    """Put `make(child)` in place of each child `find_layers` found."""
    for parent, key, layer in found:
        new = make(layer)
        if getattr(parent, key, None) is layer:  # an attribute: SkipFCN's
            delattr(parent, key)  # Block refuses a new type in place
            setattr(parent, key, new)
        else:  # a HybridSequential's numbered child
            parent.register_child(new, key)


def use_quadrant_split(net):
    """Put a `QuadrantConv2DTranspose` sharing its parameters in place of
    every eligible transposed convolution of `net`; returns the number
    replaced. Replaces none where the native operators cannot run (no
    compiler, `GLUON_FCN_NATIVE=0`) or the layer is not on the CPU."""
    eligible = find_layers(net, lambda b: type(b) is nn.Conv2DTranspose
                           and is_quadrant_split(b))
    on_cpu = all(ctx.device_type == 'cpu' for _, _, layer in eligible
                 for ctx in layer.weight.list_ctx())
    if not (eligible and on_cpu and native.load()):
        return 0
    replace_layers(eligible, QuadrantConv2DTranspose.from_layer)
    return len(eligible)


def accelerate(net):
    """Compute `net` (from `build_fcn`) faster on a CPU, in place: its
    transposed convolutions through the quadrant split, with the same
    parameters, outputs and gradients (`gluon_fcn.fast.upsample`). It
    compiles the native operators on first use; where they cannot run (no
    compiler, a GPU) the net is left as it is. Call it before
    `hybridize`. Returns `net`."""
    use_quadrant_split(net)
    return net


def use_chapter_layers(net):
    """Undo `use_quadrant_split`: the chapter's `nn.Conv2DTranspose`,
    sharing its parameters, in place of every `QuadrantConv2DTranspose`
    of `net` (for export: other runtimes know MXNet's operators, not
    ours). The outputs stay the same to float32 rounding. Returns the
    number replaced."""
    found = find_layers(
        net, lambda b: isinstance(b, QuadrantConv2DTranspose))
    replace_layers(found, lambda layer: same_layer_as(
        nn.Conv2DTranspose, layer))
    return len(found)


def for_inference(layer):
    """`layer` as a `QuadrantConv2DTranspose` sharing its parameters where
    it is a transposed convolution `fcn_upsample` computes, on the CPU;
    else `layer` itself."""
    if not (isinstance(layer, nn.Conv2DTranspose) and
            is_quadrant_split(layer) and
            conv_settings(layer)['stride'][0] in FUSED_STRIDES and
            all(c.device_type == 'cpu' for c in layer.weight.list_ctx())
            and native.load()):
        return layer
    return QuadrantConv2DTranspose.from_layer(layer)
