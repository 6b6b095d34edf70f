// Two CPU operators for MXNet's external-library API (lib_api.h), loaded
// at run time by gluon_fcn/native.py:
//
// fcn_pixel_ce(logits (B, C, H, W), labels (B, H, W), ignore_label=-1)
//   -> (loss (B,), lse (B, H, W)): per example, the mean over its pixels
//   of -log softmax(logits)[label], as Gluon's SoftmaxCrossEntropyLoss
//   (axis=1) with labels clipped to [0, C) like `pick`; pixels labelled
//   `ignore_label` (when >= 0) are left out of the mean. `lse` is the
//   per-pixel log-sum-exp, kept for the backward pass. One read of the
//   logits forward, one read and one write backward, no transposes.
//
// fcn_blocks_to_image(z (B, H1, W1, C*s*s), channels=C, stride=s, pad=p)
//   -> (B, C, s*H1 - 2p, s*W1 - 2p): each row of z holds an s x s block
//   of every channel; the blocks are laid side by side and p pixels are
//   cropped from each border. The last step of the quadrant-split
//   transposed convolution (gluon_fcn/upsample.py).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <unordered_map>
#include <vector>

#include "lib_api.h"

using mxnet::ext::MXReturnValue;
using mxnet::ext::MXTensor;
using mxnet::ext::OpResource;
using mxnet::ext::MX_FAIL;
using mxnet::ext::MX_SUCCESS;
using Attrs = std::unordered_map<std::string, std::string>;
using Shapes = std::vector<std::vector<unsigned int>>;

#if defined(__x86_64__) && defined(__GLIBC__)
// glibc's libmvec has vector versions of expf: let `omp simd` loops use
// them (math.h declares them only under -ffast-math, which we avoid so
// that NaN still propagates to the loss).
#pragma omp declare simd notinbranch
extern "C" float expf(float);
#endif

namespace {

constexpr int kChunk = 256;  // pixels per task: its C rows stay in L1

int int_attr(const Attrs& attrs, const char* key, int fallback) {
  auto it = attrs.find(key);
  return it == attrs.end() ? fallback : std::stoi(it->second);
}

int clipped_label(float v, int C) {  // `pick`'s mode='clip'
  int y = static_cast<int>(v);
  return y < 0 ? 0 : (y >= C ? C - 1 : y);
}

bool ignored(float v, int ignore) {
  return ignore >= 0 && static_cast<int>(v) == ignore;
}

// lse[i] = log sum_c exp(z[c * HW + i]) for the n pixels of one chunk
void chunk_lse(const float* z, int64_t HW, int64_t C, int n, float* lse) {
  float m[kChunk], s[kChunk];
  for (int i = 0; i < n; ++i) m[i] = z[i];
  for (int64_t c = 1; c < C; ++c) {
    const float* zc = z + c * HW;
#pragma omp simd
    for (int i = 0; i < n; ++i) m[i] = zc[i] > m[i] ? zc[i] : m[i];
  }
  for (int i = 0; i < n; ++i) s[i] = 0.f;
  for (int64_t c = 0; c < C; ++c) {
    const float* zc = z + c * HW;
#pragma omp simd
    for (int i = 0; i < n; ++i) s[i] += expf(zc[i] - m[i]);
  }
  for (int i = 0; i < n; ++i) lse[i] = m[i] + std::log(s[i]);
}

struct Pixels {  // the (B, C, HW) view of the logits, cut into chunks
  int64_t B, C, HW, chunks;
  explicit Pixels(const std::vector<int64_t>& shape)
      : B(shape[0]), C(shape[1]), HW(shape[2] * shape[3]),
        chunks((shape[2] * shape[3] + kChunk - 1) / kChunk) {}
  int64_t start(int64_t task) const { return (task % chunks) * kChunk; }
  int size(int64_t task) const {
    return static_cast<int>(std::min<int64_t>(kChunk, HW - start(task)));
  }
};

}  // namespace

// Both operators: `kIn` inputs, `kOut` outputs, all float32.
template <int kIn, int kOut>
MXReturnValue counts(const Attrs& attrs, int* num_in, int* num_out) {
  *num_in = kIn;
  *num_out = kOut;
  return MX_SUCCESS;
}

MXReturnValue float32Only(const Attrs& attrs, std::vector<int>* in,
                          std::vector<int>* out) {
  for (int t : *in) {
    if (t != mxnet::ext::kFloat32) {
      MX_ERROR_MSG << "gluon-fcn's native operators take float32 only";
      return MX_FAIL;
    }
  }
  std::fill(out->begin(), out->end(), mxnet::ext::kFloat32);
  return MX_SUCCESS;
}

MXReturnValue ceShape(const Attrs& attrs, Shapes* in, Shapes* out) {
  const auto& z = in->at(0);
  const auto& y = in->at(1);
  if (z.size() != 4 || y.size() != 3 || y[0] != z[0] || y[1] != z[2] ||
      y[2] != z[3]) {
    MX_ERROR_MSG << "fcn_pixel_ce: logits (B, C, H, W) need labels "
                    "(B, H, W)";
    return MX_FAIL;
  }
  out->at(0) = {z[0]};
  out->at(1) = y;
  return MX_SUCCESS;
}

MXReturnValue ceForward(const Attrs& attrs, std::vector<MXTensor>* inputs,
                        std::vector<MXTensor>* outputs,
                        const OpResource& res) {
  const Pixels px(inputs->at(0).shape);
  const float* z = inputs->at(0).data<float>();
  const float* y = inputs->at(1).data<float>();
  float* loss = outputs->at(0).data<float>();
  float* lse = outputs->at(1).data<float>();
  const int ignore = int_attr(attrs, "ignore_label", -1);
  // per-chunk sums, added up in a fixed order: the same bits on any
  // number of threads
  std::vector<double> total(px.B * px.chunks), count(px.B * px.chunks);
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < px.B * px.chunks; ++t) {
    const int64_t b = t / px.chunks, i0 = px.start(t);
    const int n = px.size(t);
    const float* zb = z + b * px.C * px.HW + i0;
    const float* yb = y + b * px.HW + i0;
    float* l = lse + b * px.HW + i0;
    chunk_lse(zb, px.HW, px.C, n, l);
    double sum = 0, cnt = 0;
    for (int i = 0; i < n; ++i) {
      if (ignored(yb[i], ignore)) continue;
      sum += l[i] - zb[clipped_label(yb[i], px.C) * px.HW + i];
      cnt += 1;
    }
    total[t] = sum;
    count[t] = cnt;
  }
  for (int64_t b = 0; b < px.B; ++b) {
    double sum = 0, cnt = 0;
    for (int64_t k = b * px.chunks; k < (b + 1) * px.chunks; ++k) {
      sum += total[k];
      cnt += count[k];
    }
    loss[b] = static_cast<float>(sum / std::max(cnt, 1.0));
  }
  return MX_SUCCESS;
}

// inputs: d loss, d lse, logits, labels, loss, lse; outputs: d logits,
// d labels (zero). d logits = softmax * (g / N + d lse) - onehot * g / N
MXReturnValue ceBackward(const Attrs& attrs, std::vector<MXTensor>* inputs,
                         std::vector<MXTensor>* outputs,
                         const OpResource& res) {
  const Pixels px(inputs->at(2).shape);
  const float* gloss = inputs->at(0).data<float>();
  const float* glse = inputs->at(1).data<float>();
  const float* z = inputs->at(2).data<float>();
  const float* y = inputs->at(3).data<float>();
  const float* lse = inputs->at(5).data<float>();
  float* dz = outputs->at(0).data<float>();
  float* dy = outputs->at(1).data<float>();
  const int ignore = int_attr(attrs, "ignore_label", -1);
  std::vector<float> scale(px.B);  // g / N of each example
  for (int64_t b = 0; b < px.B; ++b) {
    int64_t n = 0;
    for (int64_t i = 0; i < px.HW; ++i)
      n += !ignored(y[b * px.HW + i], ignore);
    scale[b] = gloss[b] / static_cast<float>(std::max<int64_t>(n, 1));
  }
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < px.B * px.chunks; ++t) {
    const int64_t b = t / px.chunks, i0 = px.start(t);
    const int n = px.size(t);
    const float* l = lse + b * px.HW + i0;
    const float* g = glse + b * px.HW + i0;
    const float* yb = y + b * px.HW + i0;
    float w[kChunk];  // each pixel's weight of its softmax
    for (int i = 0; i < n; ++i)
      w[i] = (ignored(yb[i], ignore) ? 0.f : scale[b]) + g[i];
    for (int64_t c = 0; c < px.C; ++c) {
      const float* zc = z + (b * px.C + c) * px.HW + i0;
      float* dc = dz + (b * px.C + c) * px.HW + i0;
#pragma omp simd
      for (int i = 0; i < n; ++i) dc[i] = w[i] * expf(zc[i] - l[i]);
    }
    for (int i = 0; i < n; ++i) {
      if (ignored(yb[i], ignore)) continue;
      dz[(b * px.C + clipped_label(yb[i], px.C)) * px.HW + i0 + i] -=
          scale[b];
    }
    std::memset(dy + b * px.HW + i0, 0, n * sizeof(float));
  }
  return MX_SUCCESS;
}

REGISTER_OP(fcn_pixel_ce)
.setParseAttrs(counts<2, 2>)
.setInferType(float32Only)
.setInferShape(ceShape)
.setForward(ceForward, "cpu")
.setBackward(ceBackward, "cpu");

namespace {

struct Blocks {  // z (B, H1, W1, C*s*s) -> y (B, C, Ho, Wo)
  int64_t B, H1, W1, C, s, p, Ho, Wo;
  Blocks(const Attrs& attrs, const std::vector<int64_t>& zshape)
      : B(zshape[0]), H1(zshape[1]), W1(zshape[2]),
        C(int_attr(attrs, "channels", 0)), s(int_attr(attrs, "stride", 0)),
        p(int_attr(attrs, "pad", 0)), Ho(s * H1 - 2 * p),
        Wo(s * W1 - 2 * p) {}
  // block column qx covers output columns [j0, j0 + n), from its k0-th
  struct Run { int64_t j0, k0, n; };
  Run run(int64_t qx) const {
    int64_t j0 = qx * s - p, k0 = 0, n = s;
    if (j0 < 0) { k0 = -j0; n += j0; j0 = 0; }
    n = std::min(n, Wo - j0);
    return {j0, k0, n};
  }
};

}  // namespace

MXReturnValue b2iShape(const Attrs& attrs, Shapes* in, Shapes* out) {
  const auto& z = in->at(0);
  const unsigned C = int_attr(attrs, "channels", 0);
  const unsigned s = int_attr(attrs, "stride", 0);
  const unsigned p = int_attr(attrs, "pad", 0);
  if (z.size() != 4 || s == 0 || z[3] != C * s * s || 2 * p > s * z[1] ||
      2 * p > s * z[2]) {
    MX_ERROR_MSG << "fcn_blocks_to_image: input must be (B, H, W, C*s*s)";
    return MX_FAIL;
  }
  out->at(0) = {z[0], C, s * z[1] - 2 * p, s * z[2] - 2 * p};
  return MX_SUCCESS;
}

MXReturnValue b2iForward(const Attrs& attrs, std::vector<MXTensor>* inputs,
                         std::vector<MXTensor>* outputs,
                         const OpResource& res) {
  const Blocks g(attrs, inputs->at(0).shape);
  const float* z = inputs->at(0).data<float>();
  float* y = outputs->at(0).data<float>();
  const int64_t block = g.C * g.s * g.s;
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < g.B * g.C * g.Ho; ++t) {  // one output row
    const int64_t b = t / (g.C * g.Ho), c = (t / g.Ho) % g.C;
    const int64_t r = t % g.Ho + g.p, qy = r / g.s, ry = r % g.s;
    const float* zrow = z + (b * g.H1 + qy) * g.W1 * block +
                        (c * g.s + ry) * g.s;
    for (int64_t qx = 0; qx < g.W1; ++qx) {
      const Blocks::Run run = g.run(qx);
      if (run.n > 0)
        std::memcpy(y + t * g.Wo + run.j0, zrow + qx * block + run.k0,
                    run.n * sizeof(float));
    }
  }
  return MX_SUCCESS;
}

// inputs: d y, z, y; outputs: d z (zero where cropped)
MXReturnValue b2iBackward(const Attrs& attrs, std::vector<MXTensor>* inputs,
                          std::vector<MXTensor>* outputs,
                          const OpResource& res) {
  const Blocks g(attrs, inputs->at(1).shape);
  const float* dy = inputs->at(0).data<float>();
  float* dz = outputs->at(0).data<float>();
  const int64_t block = g.C * g.s * g.s;
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < g.B * g.H1 * g.W1; ++t) {  // one block
    const int64_t b = t / (g.H1 * g.W1), qy = (t / g.W1) % g.H1;
    const Blocks::Run run = g.run(t % g.W1);
    std::memset(dz + t * block, 0, block * sizeof(float));
    for (int64_t c = 0; c < g.C; ++c) {
      for (int64_t ry = 0; ry < g.s; ++ry) {
        const int64_t r = qy * g.s + ry - g.p;
        if (r < 0 || r >= g.Ho || run.n <= 0) continue;
        std::memcpy(dz + t * block + (c * g.s + ry) * g.s + run.k0,
                    dy + ((b * g.C + c) * g.Ho + r) * g.Wo + run.j0,
                    run.n * sizeof(float));
      }
    }
  }
  return MX_SUCCESS;
}

REGISTER_OP(fcn_blocks_to_image)
.setParseAttrs(counts<1, 1>)
.setInferType(float32Only)
.setInferShape(b2iShape)
.setForward(b2iForward, "cpu")
.setBackward(b2iBackward, "cpu");

MXReturnValue initialize(int version) {
  return version >= 10700 ? MX_SUCCESS : MX_FAIL;  // lib_api: 1.7 on
}
