// Three CPU operators for MXNet's external-library API (lib_api.h), loaded
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
//
// fcn_upsample(x (B, Ci, H, W), weight (Ci, Co, 2s, 2s), bias (Co,),
//   stride=s, pad=p) -> (B, Co, s*(H+1) - 2p, s*(W+1) - 2p): the same
//   transposed convolution in one pass, for inference (no backward): each
//   output block gathers its four neighbouring input pixels (the taps) and
//   multiplies them by its rows of the weight, written straight into the
//   output, so the blocks never go through memory. Its backward likewise
//   computes the input, weight and bias gradients from the output's
//   gradient read block by block, without the blocks.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <unordered_map>
#include <vector>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

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

namespace {

constexpr int kQ = 4;  // blocks computed together, sharing weight loads

struct Upsample {  // x (B, Ci, H, W) -> y (B, Co, Ho, Wo)
  int64_t B, Ci, H, W, Co, s, p, Ho, Wo, K, Wq;
  Upsample(const Attrs& attrs, const std::vector<int64_t>& x, int64_t co)
      : B(x[0]), Ci(x[1]), H(x[2]), W(x[3]), Co(co),
        s(int_attr(attrs, "stride", 0)), p(int_attr(attrs, "pad", 0)),
        Ho(s * (H + 1) - 2 * p), Wo(s * (W + 1) - 2 * p), K(4 * Ci),
        Wq((W + kQ) / kQ * kQ) {}
};

// taps (B, H+1, K, Wq): x[b, c, qy - a, qx - e] at k = (a * 2 + e) * Ci + c
// and column qx, zero outside the image and in the columns past W
void gather_taps(const Upsample& u, const float* x, float* taps) {
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < u.B * (u.H + 1); ++t) {
    const int64_t b = t / (u.H + 1), qy = t % (u.H + 1);
    for (int64_t k = 0; k < u.K; ++k) {
      const int64_t a = k / (2 * u.Ci), e = (k / u.Ci) % 2, c = k % u.Ci;
      const int64_t iy = qy - a;
      float* tap = taps + (t * u.K + k) * u.Wq;
      for (int64_t qx = 0; qx < u.Wq; ++qx) {
        const int64_t ix = qx - e;
        tap[qx] = iy >= 0 && iy < u.H && ix >= 0 && ix < u.W
                      ? x[((b * u.Ci + c) * u.H + iy) * u.W + ix] : 0.f;
      }
    }
  }
}

// One output row class (b, o, ry): every block's row ry of channel o.
// `wrow` (K, S) holds the weight's rows ry and s + ry of channel o; kQ
// blocks side by side share each of its loads.
template <int S>
void upsample_rows(const Upsample& u, const float* taps, const float* wrow,
                   float bias, int64_t b, int64_t o, int64_t ry,
                   float* y) {
  for (int64_t qy = 0; qy <= u.H; ++qy) {
    const int64_t r = qy * S + ry - u.p;
    if (r < 0 || r >= u.Ho) continue;
    const float* trow = taps + (b * (u.H + 1) + qy) * u.K * u.Wq;
    float* yrow = y + ((b * u.Co + o) * u.Ho + r) * u.Wo;
    for (int64_t q0 = 0; q0 <= u.W; q0 += kQ) {
      float acc[kQ][S];
      for (int q = 0; q < kQ; ++q)
        for (int rx = 0; rx < S; ++rx) acc[q][rx] = bias;
      for (int64_t k = 0; k < u.K; ++k) {
        const float* wk = wrow + k * S;
        const float* tk = trow + k * u.Wq + q0;
        for (int q = 0; q < kQ; ++q) {
          const float v = tk[q];
#pragma omp simd
          for (int rx = 0; rx < S; ++rx) acc[q][rx] += v * wk[rx];
        }
      }
      for (int q = 0; q < kQ && q0 + q <= u.W; ++q) {  // crop p at borders
        const int64_t j0 = (q0 + q) * S - u.p;
        const int64_t lo = std::max<int64_t>(0, -j0);
        const int64_t hi = std::min<int64_t>(S, u.Wo - j0);
        for (int64_t rx = lo; rx < hi; ++rx) yrow[j0 + rx] = acc[q][rx];
      }
    }
  }
}

#if defined(__AVX512F__)
// upsample_rows for S = 16 NV with AVX-512: the kQ x NV accumulators stay
// in registers (GCC keeps the generic version's in memory)
template <int S>
void upsample_rows_avx512(const Upsample& u, const float* taps,
                          const float* wrow, float bias, int64_t b,
                          int64_t o, int64_t ry, float* y) {
  constexpr int NV = S / 16;
  for (int64_t qy = 0; qy <= u.H; ++qy) {
    const int64_t r = qy * S + ry - u.p;
    if (r < 0 || r >= u.Ho) continue;
    const float* trow = taps + (b * (u.H + 1) + qy) * u.K * u.Wq;
    float* yrow = y + ((b * u.Co + o) * u.Ho + r) * u.Wo;
    for (int64_t q0 = 0; q0 <= u.W; q0 += kQ) {
      __m512 acc[kQ][NV];
      for (int q = 0; q < kQ; ++q)
        for (int v = 0; v < NV; ++v) acc[q][v] = _mm512_set1_ps(bias);
      for (int64_t k = 0; k < u.K; ++k) {
        const float* wk = wrow + k * S;
        const float* tk = trow + k * u.Wq + q0;
        __m512 w[NV];
        for (int v = 0; v < NV; ++v) w[v] = _mm512_loadu_ps(wk + 16 * v);
        for (int q = 0; q < kQ; ++q) {
          const __m512 t = _mm512_set1_ps(tk[q]);
          for (int v = 0; v < NV; ++v)
            acc[q][v] = _mm512_fmadd_ps(t, w[v], acc[q][v]);
        }
      }
      for (int q = 0; q < kQ && q0 + q <= u.W; ++q) {  // crop p at borders
        const int64_t j0 = (q0 + q) * S - u.p;
        if (j0 >= 0 && j0 + S <= u.Wo) {
          for (int v = 0; v < NV; ++v)
            _mm512_storeu_ps(yrow + j0 + 16 * v, acc[q][v]);
          continue;
        }
        float block[S];
        for (int v = 0; v < NV; ++v)
          _mm512_storeu_ps(block + 16 * v, acc[q][v]);
        const int64_t lo = std::max<int64_t>(0, -j0);
        const int64_t hi = std::min<int64_t>(S, u.Wo - j0);
        for (int64_t rx = lo; rx < hi; ++rx) yrow[j0 + rx] = block[rx];
      }
    }
  }
}
#endif

using RowsFn = void (*)(const Upsample&, const float*, const float*, float,
                        int64_t, int64_t, int64_t, float*);

RowsFn rows_for(int64_t s) {  // the FCN's strides: 32, 16, 8, 2
  switch (s) {
    case 2: return upsample_rows<2>;
    case 4: return upsample_rows<4>;
    case 8: return upsample_rows<8>;
#if defined(__AVX512F__)
    case 16: return upsample_rows_avx512<16>;
    case 32: return upsample_rows_avx512<32>;
    case 64: return upsample_rows_avx512<64>;
#else
    case 16: return upsample_rows<16>;
    case 32: return upsample_rows<32>;
    case 64: return upsample_rows<64>;
#endif
    default: return nullptr;
  }
}

}  // namespace

MXReturnValue upShape(const Attrs& attrs, Shapes* in, Shapes* out) {
  const auto& x = in->at(0);
  const auto& w = in->at(1);
  const unsigned s = int_attr(attrs, "stride", 0);
  const unsigned p = int_attr(attrs, "pad", 0);
  if (x.size() != 4 || w.size() != 4 || w[0] != x[1] || w[2] != 2 * s ||
      w[3] != 2 * s || rows_for(s) == nullptr || p >= s ||
      in->at(2).size() != 1 || in->at(2)[0] != w[1]) {
    MX_ERROR_MSG << "fcn_upsample: x (B, Ci, H, W), weight (Ci, Co, 2s, "
                    "2s), bias (Co,), stride s in 2, 4, ..., 64, pad < s";
    return MX_FAIL;
  }
  out->at(0) = {x[0], w[1], s * (x[2] + 1) - 2 * p, s * (x[3] + 1) - 2 * p};
  return MX_SUCCESS;
}

MXReturnValue upForward(const Attrs& attrs, std::vector<MXTensor>* inputs,
                        std::vector<MXTensor>* outputs,
                        const OpResource& res) {
  const Upsample u(attrs, inputs->at(0).shape, inputs->at(1).shape[1]);
  const float* x = inputs->at(0).data<float>();
  const float* w = inputs->at(1).data<float>();
  const float* bias = inputs->at(2).data<float>();
  float* y = outputs->at(0).data<float>();
  std::vector<float> taps(u.B * (u.H + 1) * u.K * u.Wq);
  gather_taps(u, x, taps.data());
  const RowsFn rows = rows_for(u.s);
#pragma omp parallel
  {
    std::vector<float> wrow(u.K * u.s);  // (K, s) of this (o, ry)
#pragma omp for schedule(static)
    for (int64_t t = 0; t < u.B * u.Co * u.s; ++t) {
      const int64_t b = t / (u.Co * u.s), o = (t / u.s) % u.Co;
      const int64_t ry = t % u.s;
      for (int64_t a = 0; a < 2; ++a)
        for (int64_t e = 0; e < 2; ++e)
          for (int64_t c = 0; c < u.Ci; ++c)
            std::memcpy(&wrow[((a * 2 + e) * u.Ci + c) * u.s],
                        w + ((c * u.Co + o) * 2 * u.s + a * u.s + ry) *
                                2 * u.s + e * u.s,
                        u.s * sizeof(float));
      rows(u, taps.data(), wrow.data(), bias[o], b, o, ry, y);
    }
  }
  return MX_SUCCESS;
}

namespace {

// The backward pass of `fcn_upsample`, without the (B, H+1, W+1, Co s s)
// blocks the quadrant split's GEMM would hold. With G the (cropped) output
// gradient read as blocks, zero outside the image, and Wm the
// (Co s s, 4 Ci) rearranged weight:
//   dtaps = G Wm (then each input pixel sums its four taps), dWm = G^T taps
//   and dbias[o] = the sum of G over channel o.
struct UpGrad : Upsample {
  int64_t H1, W1, W1p, Kp, N;
  UpGrad(const Attrs& attrs, const std::vector<int64_t>& x, int64_t co)
      : Upsample(attrs, x, co), H1(H + 1), W1(W + 1),
        W1p((W + 8) / 8 * 8), Kp((K + 31) / 32 * 32), N(co * s * s) {}

  // row r of dY's channel o of image b laid out by block: row[qx s + rx]
  // = dY[b, o, r, qx s + rx - p], zero where that column is cropped; all
  // zero where r is
  void block_row(const float* dy, int64_t b, int64_t o, int64_t r,
                 float* row) const {
    std::fill(row, row + W1p * s, 0.f);
    if (r < 0 || r >= Ho) return;
    std::memcpy(row + p, dy + ((b * Co + o) * Ho + r) * Wo,
                Wo * sizeof(float));
  }

  // where weight (Ci, Co, 2s, 2s) holds the entry of Wm's row (o, ry, rx)
  // and column k = (a * 2 + e) * Ci + c: quadrant (a, e) of (c, o)
  int64_t weight_index(int64_t o, int64_t ry, int64_t rx, int64_t k) const {
    const int64_t a = k / (2 * Ci), e = (k / Ci) % 2, c = k % Ci;
    return ((c * Co + o) * 2 * s + a * s + ry) * 2 * s + e * s + rx;
  }
};

// rows (o, ry, rx) of Wm, each Kp long (zero past K): (N, Kp)
std::vector<float> weight_rows(const UpGrad& g, const float* w) {
  std::vector<float> wm(g.N * g.Kp, 0.f);
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < g.N; ++n) {
    const int64_t o = n / (g.s * g.s), ry = (n / g.s) % g.s, rx = n % g.s;
    for (int64_t k = 0; k < g.K; ++k)
      wm[n * g.Kp + k] = w[g.weight_index(o, ry, rx, k)];
  }
  return wm;
}

// dt (W1p, Kp) += the row's blocks times its (s, Kp) rows of Wm
void taps_grad_row(const UpGrad& g, const float* row, const float* wm,
                   float* dt) {
#if defined(__AVX512F__)
  for (int64_t q0 = 0; q0 < g.W1p; q0 += 8) {
    for (int64_t k0 = 0; k0 < g.Kp; k0 += 32) {
      __m512 acc[8][2];
      for (int q = 0; q < 8; ++q)
        for (int v = 0; v < 2; ++v)
          acc[q][v] = _mm512_loadu_ps(dt + (q0 + q) * g.Kp + k0 + 16 * v);
      for (int64_t rx = 0; rx < g.s; ++rx) {
        const __m512 w0 = _mm512_loadu_ps(wm + rx * g.Kp + k0);
        const __m512 w1 = _mm512_loadu_ps(wm + rx * g.Kp + k0 + 16);
        for (int q = 0; q < 8; ++q) {
          const __m512 d = _mm512_set1_ps(row[(q0 + q) * g.s + rx]);
          acc[q][0] = _mm512_fmadd_ps(d, w0, acc[q][0]);
          acc[q][1] = _mm512_fmadd_ps(d, w1, acc[q][1]);
        }
      }
      for (int q = 0; q < 8; ++q)
        for (int v = 0; v < 2; ++v)
          _mm512_storeu_ps(dt + (q0 + q) * g.Kp + k0 + 16 * v, acc[q][v]);
    }
  }
#else
  for (int64_t qx = 0; qx < g.W1p; ++qx) {
    float* d = dt + qx * g.Kp;
    for (int64_t rx = 0; rx < g.s; ++rx) {
      const float v = row[qx * g.s + rx];
      const float* w = wm + rx * g.Kp;
#pragma omp simd
      for (int64_t k = 0; k < g.Kp; ++k) d[k] += v * w[k];
    }
  }
#endif
}

// dtaps (B, H1, W1p, Kp): each block's gradient with respect to its taps
void taps_grad(const UpGrad& g, const float* dy, const float* wm,
               float* dtaps) {
#pragma omp parallel
  {
    std::vector<float> row(g.W1p * g.s);
#pragma omp for schedule(static)
    for (int64_t t = 0; t < g.B * g.H1; ++t) {
      const int64_t b = t / g.H1, qy = t % g.H1;
      float* dt = dtaps + t * g.W1p * g.Kp;
      std::fill(dt, dt + g.W1p * g.Kp, 0.f);
      for (int64_t o = 0; o < g.Co; ++o) {
        for (int64_t ry = 0; ry < g.s; ++ry) {
          const int64_t r = qy * g.s + ry - g.p;
          if (r < 0 || r >= g.Ho) continue;
          g.block_row(dy, b, o, r, row.data());
          taps_grad_row(g, row.data(), wm + (o * g.s + ry) * g.s * g.Kp,
                        dt);
        }
      }
    }
  }
}

// dx[b, c, iy, ix]: the sum of its four taps' gradients
void input_grad(const UpGrad& g, const float* dtaps, float* dx) {
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < g.B * g.Ci * g.H; ++t) {
    const int64_t b = t / (g.Ci * g.H), c = (t / g.H) % g.Ci;
    const int64_t iy = t % g.H;
    float* out = dx + t * g.W;
    for (int64_t ix = 0; ix < g.W; ++ix) {
      float sum = 0.f;
      for (int64_t a = 0; a < 2; ++a)
        for (int64_t e = 0; e < 2; ++e)
          sum += dtaps[((b * g.H1 + iy + a) * g.W1p + ix + e) * g.Kp +
                       (a * 2 + e) * g.Ci + c];
      out[ix] = sum;
    }
  }
}

// dwm (s, K) for rows (o, ry, rx = 0..s-1) of Wm: the sum over every
// block of its row of G times its taps; returns the sum of those G
double weight_grad_rows(const UpGrad& g, const float* rows, const float* taps,
                       float* dwm) {
  const int64_t nrows = g.B * g.H1;
  double total = 0.;
  for (int64_t t = 0; t < nrows; ++t) {  // a float sum per row, vectorised
    float sum = 0.f;
    const float* row = rows + t * g.W1p * g.s;
#pragma omp simd reduction(+ : sum)
    for (int64_t i = 0; i < g.W1p * g.s; ++i) sum += row[i];
    total += sum;
  }
#if defined(__AVX512F__)
  if (g.s % 16 == 0) {
    constexpr int kK = 12;
    for (int64_t r0 = 0; r0 < g.s; r0 += 16) {
      for (int64_t k0 = 0; k0 < g.K; k0 += kK) {
        const int nk = static_cast<int>(std::min<int64_t>(kK, g.K - k0));
        __m512 acc[kK];
        for (int j = 0; j < kK; ++j) acc[j] = _mm512_setzero_ps();
        for (int64_t t = 0; t < nrows; ++t) {
          const float* row = rows + t * g.W1p * g.s + r0;
          const float* tk = taps + (t * g.K + k0) * g.Wq;
          for (int64_t qx = 0; qx < g.W1; ++qx) {
            const __m512 d = _mm512_loadu_ps(row + qx * g.s);
            for (int j = 0; j < nk; ++j)
              acc[j] = _mm512_fmadd_ps(_mm512_set1_ps(tk[j * g.Wq + qx]), d,
                                       acc[j]);
          }
        }
        float out[16];
        for (int j = 0; j < nk; ++j) {
          _mm512_storeu_ps(out, acc[j]);
          for (int v = 0; v < 16; ++v) dwm[(r0 + v) * g.K + k0 + j] = out[v];
        }
      }
    }
    return total;
  }
#endif
  std::fill(dwm, dwm + g.s * g.K, 0.f);
  std::vector<float> acc(g.s);
  for (int64_t k = 0; k < g.K; ++k) {
    std::fill(acc.begin(), acc.end(), 0.f);
    for (int64_t t = 0; t < nrows; ++t) {
      const float* row = rows + t * g.W1p * g.s;
      const float* tk = taps + (t * g.K + k) * g.Wq;
      for (int64_t qx = 0; qx < g.W1; ++qx) {
        const float v = tk[qx];
#pragma omp simd
        for (int64_t rx = 0; rx < g.s; ++rx) acc[rx] += v * row[qx * g.s + rx];
      }
    }
    for (int64_t rx = 0; rx < g.s; ++rx) dwm[rx * g.K + k] = acc[rx];
  }
  return total;
}

// dweight (Ci, Co, 2s, 2s) and dbias (Co,)
void weight_grad(const UpGrad& g, const float* dy, const float* taps,
                 float* dw, float* dbias) {
  std::vector<double> sums(g.Co * g.s);
#pragma omp parallel
  {
    std::vector<float> rows(g.B * g.H1 * g.W1p * g.s);
    std::vector<float> dwm(g.s * g.K);
#pragma omp for schedule(static)
    for (int64_t t = 0; t < g.Co * g.s; ++t) {
      const int64_t o = t / g.s, ry = t % g.s;
      for (int64_t bq = 0; bq < g.B * g.H1; ++bq)
        g.block_row(dy, bq / g.H1, o, (bq % g.H1) * g.s + ry - g.p,
                    rows.data() + bq * g.W1p * g.s);
      sums[t] = weight_grad_rows(g, rows.data(), taps, dwm.data());
      for (int64_t rx = 0; rx < g.s; ++rx)
        for (int64_t k = 0; k < g.K; ++k)
          dw[g.weight_index(o, ry, rx, k)] = dwm[rx * g.K + k];
    }
  }
  for (int64_t o = 0; o < g.Co; ++o) {
    double total = 0.;
    for (int64_t ry = 0; ry < g.s; ++ry) total += sums[o * g.s + ry];
    dbias[o] = static_cast<float>(total);
  }
}

}  // namespace

// inputs: dY, then the forward's x, weight, bias and y; outputs: dx,
// dweight, dbias (written, not added to)
MXReturnValue upBackward(const Attrs& attrs, std::vector<MXTensor>* inputs,
                         std::vector<MXTensor>* outputs,
                         const OpResource& res) {
  const UpGrad g(attrs, inputs->at(1).shape, inputs->at(2).shape[1]);
  const float* dy = inputs->at(0).data<float>();
  const float* x = inputs->at(1).data<float>();
  const float* w = inputs->at(2).data<float>();
  std::vector<float> taps(g.B * g.H1 * g.K * g.Wq);
  gather_taps(g, x, taps.data());
  weight_grad(g, dy, taps.data(), outputs->at(1).data<float>(),
              outputs->at(2).data<float>());
  std::vector<float>().swap(taps);
  const std::vector<float> wm = weight_rows(g, w);
  std::vector<float> dtaps(g.B * g.H1 * g.W1p * g.Kp);
  taps_grad(g, dy, wm.data(), dtaps.data());
  input_grad(g, dtaps.data(), outputs->at(0).data<float>());
  return MX_SUCCESS;
}

REGISTER_OP(fcn_upsample)
.setParseAttrs(counts<3, 1>)
.setInferType(float32Only)
.setInferShape(upShape)
.setForward(upForward, "cpu")
.setBackward(upBackward, "cpu");

MXReturnValue initialize(int version) {
  return version >= 10700 ? MX_SUCCESS : MX_FAIL;  // lib_api: 1.7 on
}
