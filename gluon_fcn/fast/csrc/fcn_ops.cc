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
//   output, so the blocks never go through memory. Its backward fails.
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

// registered so that graphs whose parameters take gradients can hold it
MXReturnValue upBackward(const Attrs& attrs, std::vector<MXTensor>* inputs,
                         std::vector<MXTensor>* outputs,
                         const OpResource& res) {
  MX_ERROR_MSG << "fcn_upsample is for inference: train through the "
                  "quadrant split (fcn_blocks_to_image)";
  return MX_FAIL;
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
