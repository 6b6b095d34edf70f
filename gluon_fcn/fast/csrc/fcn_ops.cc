// Three CPU operators for MXNet's external-library API (lib_api.h), loaded
// at run time by gluon_fcn/fast/native.py:
//
// fcn_pixel_ce(logits (B, C, H, W), labels (B, H, W), ignore_label=-1)
//   -> (loss (B,), lse (B, H, W)): per example, the mean over its pixels
//   of -log softmax(logits)[label], as Gluon's SoftmaxCrossEntropyLoss
//   (axis=1) with labels clipped to [0, C) like `pick`; pixels labelled
//   `ignore_label` (when >= 0) are left out of the mean, and an example
//   with no pixel left has loss 0. A NaN or infinite label is an error.
//   `lse` is the per-pixel log-sum-exp, kept for the backward pass. One
//   read of the logits forward, one read and one write backward, no
//   transposes.
//
// fcn_blocks_to_image(z (B, H1, W1, C*s*s), channels=C, stride=s, pad=p)
//   -> (B, C, s*H1 - 2p, s*W1 - 2p): each row of z holds an s x s block
//   of every channel; the blocks are laid side by side and p pixels are
//   cropped from each border. The last step of the quadrant-split
//   transposed convolution (gluon_fcn/fast/upsample.py).
//
// fcn_upsample(x (B, Ci, H, W), weight (Ci, Co, 2s, 2s), bias (Co,),
//   stride=s, pad=p) -> (B, Co, s*(H+1) - 2p, s*(W+1) - 2p): the same
//   transposed convolution in one pass: each output block gathers its
//   four neighbouring input pixels (the taps) and multiplies them by its
//   rows of the weight, written straight into the output, so the blocks
//   never go through memory. Its backward likewise computes the input,
//   weight and bias gradients from the output's gradient read block by
//   block, without the blocks.
//
// Every entry point checks what it relies on (attributes, shapes, dtypes)
// and fails with a message, which MXNet raises as an MXNetError: lib_api
// passes attribute strings and tensors on unchecked.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <string>
#include <system_error>
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
using Shape = std::vector<int64_t>;

#if defined(__x86_64__) && defined(__GLIBC__)
// glibc's libmvec has vector versions of expf: let `omp simd` loops use
// them (math.h declares them only under -ffast-math, which we avoid so
// that NaN still propagates to the loss).
#pragma omp declare simd notinbranch
extern "C" float expf(float);
#endif

namespace {

// ---- Checks shared by the operators

constexpr int64_t kInt32Max = std::numeric_limits<int32_t>::max();

// attrs[key], the whole string a decimal integer in [lo, hi]; left at
// `*value` where it is not given, unless `required`
bool int_attr(const Attrs& attrs, const char* op, const char* key,
              int64_t lo, int64_t hi, bool required, int64_t* value) {
  const auto it = attrs.find(key);
  if (it == attrs.end()) {
    if (required) MX_ERROR_MSG << op << ": needs the attribute " << key;
    return !required;
  }
  const std::string& text = it->second;
  int64_t v = 0;
  // from_chars, unlike std::stoi, reads '2.5' as no integer (not 2) and
  // reports overflow instead of throwing through MXNet's C API
  const auto [end, err] =
      std::from_chars(text.data(), text.data() + text.size(), v);
  if (err != std::errc() || end != text.data() + text.size() || v < lo ||
      v > hi) {
    MX_ERROR_MSG << op << ": " << key << " must be an integer in [" << lo
                 << ", " << hi << "], got '" << text << "'";
    return false;
  }
  *value = v;
  return true;
}

// A misspelt attribute would be silently left at its default: refused.
// MXNet's own (`__profiler_scope__`, ...) start with '__'.
bool known_attrs(const Attrs& attrs, const char* op,
                 std::initializer_list<const char*> keys) {
  for (const auto& kv : attrs) {
    if (kv.first.rfind("__", 0) == 0) continue;
    if (std::none_of(keys.begin(), keys.end(),
                     [&](const char* k) { return kv.first == k; })) {
      MX_ERROR_MSG << op << ": unknown attribute '" << kv.first << "'";
      return false;
    }
  }
  return true;
}

// a * b, false where int64 would overflow: products of dims and
// attributes are 64-bit (32-bit unsigned ones wrapped)
bool mul(int64_t a, int64_t b, int64_t* out) {
  return !__builtin_mul_overflow(a, b, out);
}

// The output shapes, as lib_api's InferShape wants them (unsigned int
// dims), if every dim fits and the element count fits in int64
bool narrow(const char* op, const std::vector<Shape>& shapes,
            Shapes* out) {
  for (size_t i = 0; i < shapes.size(); ++i) {
    int64_t size = 1;
    for (int64_t d : shapes[i]) {
      if (d < 0 || d > std::numeric_limits<unsigned>::max() ||
          !mul(size, d, &size)) {
        MX_ERROR_MSG << op << ": output " << i << " would be too large";
        return false;
      }
    }
    out->at(i).assign(shapes[i].begin(), shapes[i].end());
  }
  return true;
}

std::string str(const Shape& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i)
    s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

// Every dim >= 0 and the product of the non-zero ones below 2^48, so
// that the products the passes form (offsets, counts, buffers a few
// times a tensor's size) fit in int64, even where a zero dim empties the
// tensor. MXNet itself allocates fewer than 2^31 elements.
bool sized(const char* op, const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0 || (d > 0 && (!mul(n, d, &n) || n >= int64_t{1} << 48))) {
      MX_ERROR_MSG << op << ": a tensor of shape " << str(shape)
                   << " is too large";
      return false;
    }
  }
  return true;
}

Shape wide(const std::vector<unsigned>& dims) {
  return Shape(dims.begin(), dims.end());
}

// The forward and backward passes check the tensors MXNet hands them
// against the shapes InferShape gave, before indexing them: `n` tensors,
// float32 ...
bool counted(const char* op, const std::vector<MXTensor>& ts, size_t n) {
  if (ts.size() != n) {
    MX_ERROR_MSG << op << ": " << ts.size() << " tensors, expected " << n;
    return false;
  }
  for (const MXTensor& t : ts) {
    if (t.dtype != mxnet::ext::kFloat32) {
      MX_ERROR_MSG << op << ": takes float32 only";
      return false;
    }
  }
  return true;
}

// ... each of the shape the others imply (a backward op called directly
// gets outputs of shape (), unallocated)
bool shaped(const char* op, const MXTensor& t, const Shape& want) {
  if (t.shape != want) {
    MX_ERROR_MSG << op << ": got a tensor of shape " << str(t.shape)
                 << ", expected " << str(want);
    return false;
  }
  return true;
}

// ---- fcn_pixel_ce

constexpr int kChunk = 256;  // pixels per task: its C rows stay in L1

struct CeAttrs {
  int64_t ignore = -1;  // < 0: none
};

bool parse(const Attrs& attrs, CeAttrs* a) {
  const char* op = "fcn_pixel_ce";
  return known_attrs(attrs, op, {"ignore_label"}) &&
         int_attr(attrs, op, "ignore_label", -kInt32Max - 1, kInt32Max,
                  false, &a->ignore);
}

// logits (B, C, H, W), labels (B, H, W) -> loss (B,), lse (B, H, W)
bool ce_shapes(const Shape& z, const Shape& y, std::vector<Shape>* out) {
  if (!sized("fcn_pixel_ce", z) || !sized("fcn_pixel_ce", y)) return false;
  if (z.size() != 4 || y.size() != 3 || y[0] != z[0] || y[1] != z[2] ||
      y[2] != z[3]) {
    MX_ERROR_MSG << "fcn_pixel_ce: logits (B, C, H, W) need labels "
                    "(B, H, W), got " << str(z) << " and " << str(y);
    return false;
  }
  if (z[1] < 1) {  // the log-sum-exp of no class
    MX_ERROR_MSG << "fcn_pixel_ce: logits " << str(z) << " have no class";
    return false;
  }
  *out = {{z[0]}, y};
  return true;
}

// A pixel's class: kIgnored for `ignore` (when >= 0), kNotFinite for NaN
// and +-inf (the operator fails: no class stands for them), else the
// label clipped to [0, C), as `pick` (mode 'clip') does in the chapter's
// loss. Compared as floats before the cast: casting a float beyond
// int's range, or NaN, is undefined behaviour.
constexpr int64_t kIgnored = -1, kNotFinite = -2;

int64_t label_class(float v, int64_t C, int64_t ignore) {
  if (!std::isfinite(v)) return kNotFinite;
  if (ignore >= 0 && static_cast<double>(v) == static_cast<double>(ignore))
    return kIgnored;
  if (v < 1.f) return 0;  // truncated toward 0, as `pick` casts
  if (static_cast<double>(v) >= static_cast<double>(C - 1)) return C - 1;
  return static_cast<int64_t>(v);
}

// The failure for labels[b, i], which is NaN or infinite
MXReturnValue not_finite(const Shape& y, int64_t b, int64_t i, float v) {
  MX_ERROR_MSG << "fcn_pixel_ce: label[" << b << ", " << i / y[2] << ", "
               << i % y[2] << "] is " << v << "; labels must be finite "
               << "(a class, or ignore_label)";
  return MX_FAIL;
}

// lse[i] = log sum_c exp(z[c * HW + i]) for the n pixels of one chunk;
// C >= 1 (ce_shapes)
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
  explicit Pixels(const Shape& shape)  // 4 dims (ce_shapes)
      : B(shape[0]), C(shape[1]), HW(shape[2] * shape[3]),
        chunks((shape[2] * shape[3] + kChunk - 1) / kChunk) {}
  int64_t start(int64_t task) const { return (task % chunks) * kChunk; }
  int size(int64_t task) const {
    return static_cast<int>(std::min<int64_t>(kChunk, HW - start(task)));
  }
};

}  // namespace

// Every operator: `kIn` inputs, `kOut` outputs, attributes `A`.
template <class A, int kIn, int kOut>
MXReturnValue counts(const Attrs& attrs, int* num_in, int* num_out) {
  A a;
  if (!parse(attrs, &a)) return MX_FAIL;
  *num_in = kIn;
  *num_out = kOut;
  return MX_SUCCESS;
}

MXReturnValue float32Only(const Attrs& /*attrs*/, std::vector<int>* in,
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
  CeAttrs a;
  std::vector<Shape> shapes;
  return parse(attrs, &a) &&
         ce_shapes(wide(in->at(0)), wide(in->at(1)), &shapes) &&
         narrow("fcn_pixel_ce", shapes, out) ? MX_SUCCESS : MX_FAIL;
}

MXReturnValue ceForward(const Attrs& attrs, std::vector<MXTensor>* inputs,
                        std::vector<MXTensor>* outputs,
                        const OpResource& /*res*/) {
  const char* op = "fcn_pixel_ce";
  CeAttrs a;
  std::vector<Shape> want;
  if (!parse(attrs, &a) || !counted(op, *inputs, 2) ||
      !counted(op, *outputs, 2) ||
      !ce_shapes(inputs->at(0).shape, inputs->at(1).shape, &want) ||
      !shaped(op, outputs->at(0), want[0]) ||
      !shaped(op, outputs->at(1), want[1]))
    return MX_FAIL;
  const Pixels px(inputs->at(0).shape);
  const float* z = inputs->at(0).data<float>();
  const float* y = inputs->at(1).data<float>();
  float* loss = outputs->at(0).data<float>();
  float* lse = outputs->at(1).data<float>();
  // per-chunk sums, added up in a fixed order: the same bits on any
  // number of threads; `bad`: a chunk's first label that is not finite
  const int64_t tasks = px.B * px.chunks;
  std::vector<double> total(tasks), count(tasks);
  std::vector<int64_t> bad(tasks, -1);
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < tasks; ++t) {
    const int64_t b = t / px.chunks, i0 = px.start(t);
    const int n = px.size(t);
    const float* zb = z + b * px.C * px.HW + i0;
    const float* yb = y + b * px.HW + i0;
    float* l = lse + b * px.HW + i0;
    chunk_lse(zb, px.HW, px.C, n, l);
    double sum = 0, cnt = 0;
    for (int i = 0; i < n; ++i) {
      const int64_t k = label_class(yb[i], px.C, a.ignore);
      if (k == kNotFinite && bad[t] < 0) bad[t] = i0 + i;
      if (k < 0) continue;
      sum += l[i] - zb[k * px.HW + i];
      cnt += 1;
    }
    total[t] = sum;
    count[t] = cnt;
  }
  for (int64_t t = 0; t < tasks; ++t) {
    const int64_t b = t / px.chunks;
    if (bad[t] >= 0)
      return not_finite(want[1], b, bad[t], y[b * px.HW + bad[t]]);
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
                         const OpResource& /*res*/) {
  const char* op = "fcn_pixel_ce";
  CeAttrs a;
  std::vector<Shape> want;
  if (!parse(attrs, &a) || !counted(op, *inputs, 6) ||
      !counted(op, *outputs, 2) ||
      !ce_shapes(inputs->at(2).shape, inputs->at(3).shape, &want) ||
      !shaped(op, inputs->at(0), want[0]) ||
      !shaped(op, inputs->at(1), want[1]) ||
      !shaped(op, inputs->at(4), want[0]) ||
      !shaped(op, inputs->at(5), want[1]) ||
      !shaped(op, outputs->at(0), inputs->at(2).shape) ||
      !shaped(op, outputs->at(1), inputs->at(3).shape))
    return MX_FAIL;
  const Pixels px(inputs->at(2).shape);
  const float* gloss = inputs->at(0).data<float>();
  const float* glse = inputs->at(1).data<float>();
  const float* z = inputs->at(2).data<float>();
  const float* y = inputs->at(3).data<float>();
  const float* lse = inputs->at(5).data<float>();
  float* dz = outputs->at(0).data<float>();
  float* dy = outputs->at(1).data<float>();
  std::vector<float> scale(px.B);  // g / N of each example
  for (int64_t b = 0; b < px.B; ++b) {
    int64_t n = 0;
    for (int64_t i = 0; i < px.HW; ++i) {
      const float v = y[b * px.HW + i];
      const int64_t k = label_class(v, px.C, a.ignore);
      if (k == kNotFinite) return not_finite(want[1], b, i, v);
      n += k != kIgnored;
    }
    scale[b] = gloss[b] / static_cast<float>(std::max<int64_t>(n, 1));
  }
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < px.B * px.chunks; ++t) {
    const int64_t b = t / px.chunks, i0 = px.start(t);
    const int n = px.size(t);
    const float* l = lse + b * px.HW + i0;
    const float* g = glse + b * px.HW + i0;
    const float* yb = y + b * px.HW + i0;
    int64_t k[kChunk];  // each pixel's class (all finite: checked above)
    float w[kChunk];  // each pixel's weight of its softmax
    for (int i = 0; i < n; ++i) {
      k[i] = label_class(yb[i], px.C, a.ignore);
      w[i] = (k[i] < 0 ? 0.f : scale[b]) + g[i];
    }
    for (int64_t c = 0; c < px.C; ++c) {
      const float* zc = z + (b * px.C + c) * px.HW + i0;
      float* dc = dz + (b * px.C + c) * px.HW + i0;
#pragma omp simd
      for (int i = 0; i < n; ++i) dc[i] = w[i] * expf(zc[i] - l[i]);
    }
    for (int i = 0; i < n; ++i) {
      if (k[i] < 0) continue;
      dz[(b * px.C + k[i]) * px.HW + i0 + i] -= scale[b];
    }
    std::memset(dy + b * px.HW + i0, 0, n * sizeof(float));
  }
  return MX_SUCCESS;
}

REGISTER_OP(fcn_pixel_ce)
.setParseAttrs(counts<CeAttrs, 2, 2>)
.setInferType(float32Only)
.setInferShape(ceShape)
.setForward(ceForward, "cpu")
.setBackward(ceBackward, "cpu");

namespace {

struct B2iAttrs {
  int64_t C = 0, s = 0, p = 0;
};

bool parse(const Attrs& attrs, B2iAttrs* a) {
  const char* op = "fcn_blocks_to_image";
  return known_attrs(attrs, op, {"channels", "stride", "pad"}) &&
         int_attr(attrs, op, "channels", 1, kInt32Max, true, &a->C) &&
         int_attr(attrs, op, "stride", 1, kInt32Max, true, &a->s) &&
         int_attr(attrs, op, "pad", 0, kInt32Max, false, &a->p);
}

// z (B, H1, W1, C*s*s) -> y (B, C, s*H1 - 2p, s*W1 - 2p)
bool b2i_shapes(const B2iAttrs& a, const Shape& z, std::vector<Shape>* out) {
  if (!sized("fcn_blocks_to_image", z)) return false;
  int64_t block = 0, sh = 0, sw = 0;
  const bool ok = z.size() == 4 && mul(a.C, a.s, &block) &&
                  mul(block, a.s, &block) && z[3] == block &&
                  mul(a.s, z[1], &sh) && mul(a.s, z[2], &sw) &&
                  2 * a.p <= sh && 2 * a.p <= sw;
  if (!ok) {
    MX_ERROR_MSG << "fcn_blocks_to_image: input must be (B, H, W, C*s*s) "
                    "with 2 pad <= s H, s W; got " << str(z) << ", C "
                 << a.C << ", s " << a.s << ", pad " << a.p;
    return false;
  }
  *out = {{z[0], a.C, sh - 2 * a.p, sw - 2 * a.p}};
  return true;
}

struct Blocks {  // z (B, H1, W1, C*s*s) -> y (B, C, Ho, Wo), b2i_shapes
  int64_t B, H1, W1, C, s, p, Ho, Wo;
  Blocks(const B2iAttrs& a, const Shape& zshape)
      : B(zshape[0]), H1(zshape[1]), W1(zshape[2]), C(a.C), s(a.s),
        p(a.p), Ho(s * H1 - 2 * p), Wo(s * W1 - 2 * p) {}
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
  B2iAttrs a;
  std::vector<Shape> shapes;
  return parse(attrs, &a) && b2i_shapes(a, wide(in->at(0)), &shapes) &&
         narrow("fcn_blocks_to_image", shapes, out) ? MX_SUCCESS : MX_FAIL;
}

MXReturnValue b2iForward(const Attrs& attrs, std::vector<MXTensor>* inputs,
                         std::vector<MXTensor>* outputs,
                         const OpResource& /*res*/) {
  const char* op = "fcn_blocks_to_image";
  B2iAttrs a;
  std::vector<Shape> want;
  if (!parse(attrs, &a) || !counted(op, *inputs, 1) ||
      !counted(op, *outputs, 1) ||
      !b2i_shapes(a, inputs->at(0).shape, &want) ||
      !shaped(op, outputs->at(0), want[0]))
    return MX_FAIL;
  const Blocks g(a, inputs->at(0).shape);
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
                          const OpResource& /*res*/) {
  const char* op = "fcn_blocks_to_image";
  B2iAttrs a;
  std::vector<Shape> want;
  if (!parse(attrs, &a) || !counted(op, *inputs, 3) ||
      !counted(op, *outputs, 1) ||
      !b2i_shapes(a, inputs->at(1).shape, &want) ||
      !shaped(op, inputs->at(0), want[0]) ||
      !shaped(op, inputs->at(2), want[0]) ||
      !shaped(op, outputs->at(0), inputs->at(1).shape))
    return MX_FAIL;
  const Blocks g(a, inputs->at(1).shape);
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
.setParseAttrs(counts<B2iAttrs, 1, 1>)
.setInferType(float32Only)
.setInferShape(b2iShape)
.setForward(b2iForward, "cpu")
.setBackward(b2iBackward, "cpu");

namespace {

constexpr int kQ = 4;  // blocks computed together, sharing weight loads

struct UpAttrs {
  int64_t s = 0, p = 0;
};

bool parse(const Attrs& attrs, UpAttrs* a) {
  const char* op = "fcn_upsample";
  if (!known_attrs(attrs, op, {"stride", "pad"}) ||
      !int_attr(attrs, op, "stride", 2, 64, true, &a->s) ||
      !int_attr(attrs, op, "pad", 0, a->s - 1, false, &a->p))
    return false;
  if (a->s & (a->s - 1)) {  // the strides `rows_for` has a kernel for
    MX_ERROR_MSG << op << ": stride must be 2, 4, 8, 16, 32 or 64, got "
                 << a->s;
    return false;
  }
  return true;
}

// x (B, Ci, H, W), weight (Ci, Co, 2s, 2s), bias (Co,)
//   -> y (B, Co, s (H + 1) - 2p, s (W + 1) - 2p)
bool up_shapes(const UpAttrs& a, const Shape& x, const Shape& w,
               const Shape& bias, std::vector<Shape>* out) {
  const char* op = "fcn_upsample";
  if (!sized(op, x) || !sized(op, w) || !sized(op, bias)) return false;
  if (x.size() != 4 || w.size() != 4 || w[0] != x[1] || w[2] != 2 * a.s ||
      w[3] != 2 * a.s || bias.size() != 1 || bias[0] != w[1]) {
    MX_ERROR_MSG << "fcn_upsample: x (B, Ci, H, W), weight (Ci, Co, 2s, "
                    "2s), bias (Co,) with s = " << a.s << "; got "
                 << str(x) << ", " << str(w) << ", " << str(bias);
    return false;
  }
  // dims below 2^48 (sized) and s <= 64: no overflow
  *out = {{x[0], w[1], a.s * (x[2] + 1) - 2 * a.p,
           a.s * (x[3] + 1) - 2 * a.p}};
  return true;
}

struct Upsample {  // x (B, Ci, H, W) -> y (B, Co, Ho, Wo), up_shapes
  int64_t B, Ci, H, W, Co, s, p, Ho, Wo, K, Wq;
  Upsample(const UpAttrs& a, const Shape& x, int64_t co)
      : B(x[0]), Ci(x[1]), H(x[2]), W(x[3]), Co(co), s(a.s), p(a.p),
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
  UpAttrs a;
  std::vector<Shape> shapes;
  return parse(attrs, &a) &&
         up_shapes(a, wide(in->at(0)), wide(in->at(1)), wide(in->at(2)),
                   &shapes) &&
         narrow("fcn_upsample", shapes, out) ? MX_SUCCESS : MX_FAIL;
}

MXReturnValue upForward(const Attrs& attrs, std::vector<MXTensor>* inputs,
                        std::vector<MXTensor>* outputs,
                        const OpResource& /*res*/) {
  const char* op = "fcn_upsample";
  UpAttrs up;
  std::vector<Shape> want;
  if (!parse(attrs, &up) || !counted(op, *inputs, 3) ||
      !counted(op, *outputs, 1) ||
      !up_shapes(up, inputs->at(0).shape, inputs->at(1).shape,
                 inputs->at(2).shape, &want) ||
      !shaped(op, outputs->at(0), want[0]))
    return MX_FAIL;
  const Upsample u(up, inputs->at(0).shape, inputs->at(1).shape[1]);
  const RowsFn rows = rows_for(u.s);
  if (rows == nullptr) {  // parse allows only the strides it has
    MX_ERROR_MSG << op << ": no kernel for stride " << u.s;
    return MX_FAIL;
  }
  const float* x = inputs->at(0).data<float>();
  const float* w = inputs->at(1).data<float>();
  const float* bias = inputs->at(2).data<float>();
  float* y = outputs->at(0).data<float>();
  std::vector<float> taps(u.B * (u.H + 1) * u.K * u.Wq);
  gather_taps(u, x, taps.data());
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
  UpGrad(const UpAttrs& a, const Shape& x, int64_t co)
      : Upsample(a, x, co), H1(H + 1), W1(W + 1),
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
                         const OpResource& /*res*/) {
  const char* op = "fcn_upsample";
  UpAttrs a;
  std::vector<Shape> want;
  if (!parse(attrs, &a) || !counted(op, *inputs, 5) ||
      !counted(op, *outputs, 3) ||
      !up_shapes(a, inputs->at(1).shape, inputs->at(2).shape,
                 inputs->at(3).shape, &want) ||
      !shaped(op, inputs->at(0), want[0]) ||
      !shaped(op, inputs->at(4), want[0]))
    return MX_FAIL;
  for (int i = 0; i < 3; ++i)  // dx, dweight, dbias
    if (!shaped(op, outputs->at(i), inputs->at(i + 1).shape)) return MX_FAIL;
  const UpGrad g(a, inputs->at(1).shape, inputs->at(2).shape[1]);
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
.setParseAttrs(counts<UpAttrs, 3, 1>)
.setInferType(float32Only)
.setInferShape(upShape)
.setForward(upForward, "cpu")
.setBackward(upBackward, "cpu");

MXReturnValue initialize(int version) {
  return version >= 10700 ? MX_SUCCESS : MX_FAIL;  // lib_api: 1.7 on
}
