// The elementwise stages of the chunked SSD around its matmuls, one warp per (b, t, h) row of
// P values, over the padded length Lp = C * Q. Layouts of a [B, Lp, H, P] quantity:
//   natural [B, L, H, P] (the node's inputs and outputs, unpadded: rows t >= L read as 0),
//   cols    [B, C, G, Q, H/G * P] (a group's heads side by side: the B/C matmuls' operand),
//   heads   [B, C, H, Q, P] (per head: the diagonal blocks' operand);
// per-position factors [B, C, H, Q] (fp32).
// Token indices are 32-bit (B * C * Q * H < 2^31, checked by the caller): 64-bit division is slow.
// Rust side: `rows_kernel` in src/ssd/fused.rs, each stage with a tensor-op twin there.
#include "common.cuh"

#ifndef ROWS_REGS
#define ROWS_REGS 64  // registers a thread of the row kernels (40 spilled at 8 values a lane)
#endif

struct Rows {
  int B, L, H, P, G, Q, C;
};

// The offsets of one (token, head) row in each layout.
struct At {
  long long natural, factor, heads, cols;
};

// Offsets of token (b, t)'s head 0, per layout; a head adds H-linear steps except in the columns
// layout, where its group and place in the group count.
struct Token {
  long long natural, factor, cols;
  __device__ Token(const Rows& R, int b, int t) {
    int c = t / R.Q, q = t - c * R.Q;
    long long bc = (long long)b * R.C + c;
    natural = ((long long)b * R.L + t) * R.H * R.P;
    factor = bc * R.H * R.Q + q;
    cols = (bc * R.G * R.Q + q) * (long long)(R.H / R.G) * R.P;
  }
  __device__ At at(const Rows& R, int h) const {
    int hpg = R.H / R.G, g = h / hpg, j = h - g * hpg;
    long long f = factor + (long long)h * R.Q;
    return {natural + (long long)h * R.P, f, f * R.P, cols + ((long long)g * R.Q * hpg + j) * R.P};
  }
};



// One block per token (b, t) of the padded length (grid-stride), its warps over the heads (32 /
// head_lanes heads a warp), each lane over E consecutive values of P (P a multiple of E, the
// operands aligned to E values: the host falls back to E = 2 otherwise): index arithmetic once
// per (token, head), one load of E values (8 or 16 bytes for E 4 or 8 in bf16) per operand; two
// heads' loads issued before either's stores (unrolled, restrict pointers), so that each lane has
// 2 E values of every operand in flight. `live` is false for the lanes of a warp's last heads
// past H: they skip the row (loads and stores) but still take part in head_sum.
#define ROWS_LOOP(R, E)                                                                                   \
  int hl = head_lanes((R).P, E), hpw = 32 / hl, step = (E) * hl, nw = blockDim.x >> 5;                    \
  int lane = (threadIdx.x & 31) % hl, sub = (threadIdx.x & 31) / hl;                                      \
  unsigned ntok = (unsigned)(R).B * (R).C * (R).Q, per_b = (unsigned)(R).C * (R).Q;                       \
  for (unsigned bt = blockIdx.x; bt < ntok; bt += gridDim.x)                                               \
    _Pragma("unroll 2")                                                                                   \
    for (int hb = (threadIdx.x >> 5) * hpw, b = (int)(bt / per_b), t = (int)(bt % per_b); hb < (R).H;      \
         hb += nw * hpw)                                                                                  \
      if (const int h = min(hb + sub, (R).H - 1), live = hb + sub < (R).H; true)                          \
        if (const At o = Token(R, b, t).at(R, h); true)

// y (natural, fp32) = raw (cols) * exp(acs) + ydiag (heads): the output from the states
// entering the chunks plus the diagonal blocks'. raw null: no state enters (one chunk, no h0).
template <typename T, int E>
__device__ void ssd_out(const T* __restrict__ raw, const T* __restrict__ ydiag, const float* __restrict__ acs,
                        float* __restrict__ y, Rows R) {
  ROWS_LOOP(R, E) {
    if (t >= R.L) continue;
    float e = raw ? expf(acs[o.factor]) : 0.f;
    long long oc = o.cols, oh = o.heads, on = o.natural;
    for (int p = E * lane; live && p < R.P; p += step) {
      float r[E] = {}, d[E];
      if (raw) ldv<E>(raw, oc + p, r);
      ldv<E>(ydiag, oh + p, d);
#pragma unroll
      for (int i = 0; i < E; ++i) d[i] += r[i] * e;
      stv<E>(y, on + p, d);
    }
  }
}

// xw (cols) = x (natural) * w: the inputs weighted by their decay to the chunk end; xh (heads) =
// x, the diagonal blocks' operand. xw null: only xh (no chunk states wanted).
template <typename T, int E>
__device__ void ssd_xw(const T* __restrict__ x, const float* __restrict__ w, T* __restrict__ xw, T* __restrict__ xh,
                       Rows R) {
  ROWS_LOOP(R, E) {
    bool in = t < R.L;
    long long oc = o.cols, oh = o.heads;
    float wv = in ? w[o.factor] : 0.f;
    long long on = in ? o.natural : 0;
    for (int p = E * lane; live && p < R.P; p += step) {
      float v[E] = {};
      if (in) ldv<E>(x, on + p, v);
      stv<E>(xh, oh + p, v);
      if (xw) {
#pragma unroll
        for (int i = 0; i < E; ++i) v[i] *= wv;
        stv<E>(xw, oc + p, v);
      }
    }
  }
}

// From dy (natural, fp32): dyo (cols) = dy * exp(acs), dyh (heads) = dy, and
// dacs[row] = sum over p of dy * exp(acs) * raw (the gradient of acs through exp(acs)). raw and
// dyo null: no state enters (one chunk, no h0), so dyo is not wanted and dacs is 0.
template <typename T, int E>
__device__ void ssd_dy(const float* __restrict__ dy, const T* __restrict__ raw, const float* __restrict__ acs,
                       T* __restrict__ dyo, T* __restrict__ dyh, float* __restrict__ dacs, Rows R) {
  ROWS_LOOP(R, E) {
    long long of = o.factor, oc = o.cols, oh = o.heads;
    bool in = t < R.L;
    long long on = in ? o.natural : 0;
    float e = raw ? expf(acs[of]) : 0.f, acc = 0.f;
    for (int p = E * lane; live && p < R.P; p += step) {
      float g[E] = {}, r[E] = {};
      if (in) ldv<E>(dy, on + p, g);
      if (raw) ldv<E>(raw, oc + p, r);
      stv<E>(dyh, oh + p, g);
#pragma unroll
      for (int i = 0; i < E; ++i) {
        g[i] *= e;
        acc += g[i] * r[i];
      }
      if (dyo) stv<E>(dyo, oc + p, g);
    }
    acc = head_sum(acc, hl);
    if (lane == 0 && live) dacs[of] = acc;
  }
}

// dxdt (natural) = dxw (cols) * w + dxdiag (heads), and dws[row] = w * sum over p of dxw * x
// (the gradient of the decay to the chunk end). dxw null: no gradient reaches the chunk states
// (dxdt = dxdiag, dws = 0).
template <typename T, int E>
__device__ void ssd_dx(const T* __restrict__ dxw, const T* __restrict__ x, const float* __restrict__ w,
                       const T* __restrict__ dxdiag, T* __restrict__ dxdt, float* __restrict__ dws, Rows R) {
  ROWS_LOOP(R, E) {
    long long of = o.factor, oc = o.cols, oh = o.heads;
    if (t >= R.L) {
      if (lane == 0 && live) dws[of] = 0.f;
      continue;
    }
    long long on = o.natural;
    float wv = w[of], acc = 0.f;
    for (int p = E * lane; live && p < R.P; p += step) {
      float g[E] = {}, xv[E] = {}, d[E];
      if (dxw) {
        ldv<E>(dxw, oc + p, g);
        ldv<E>(x, on + p, xv);
      }
      ldv<E>(dxdiag, oh + p, d);
#pragma unroll
      for (int i = 0; i < E; ++i) {
        acc += g[i] * xv[i];
        d[i] += g[i] * wv;
      }
      stv<E>(dxdt, on + p, d);
    }
    acc = head_sum(acc, hl);
    if (lane == 0 && live) dws[of] = acc * wv;
  }
}

#define SSD_ROWS_E(S, T, E)                                                                                    \
  extern "C" __global__ void __maxnreg__(ROWS_REGS) ssd_out##E##_##S(const T* __restrict__ raw,                      \
                                         const T* __restrict__ ydiag, const float* __restrict__ acs,                  \
                                         float* __restrict__ y, Rows R) {                                             \
    ssd_out<T, E>(raw, ydiag, acs, y, R);                                                                      \
  }                                                                                                            \
  extern "C" __global__ void __maxnreg__(ROWS_REGS) ssd_xw##E##_##S(const T* __restrict__ x,                         \
                                         const float* __restrict__ w, T* __restrict__ xw, T* __restrict__ xh,         \
                                         Rows R) {                                                                    \
    ssd_xw<T, E>(x, w, xw, xh, R);                                                                             \
  }                                                                                                            \
  extern "C" __global__ void __maxnreg__(ROWS_REGS) ssd_dy##E##_##S(const float* __restrict__ dy,                    \
                                         const T* __restrict__ raw, const float* __restrict__ acs,                    \
                                         T* __restrict__ dyo, T* __restrict__ dyh, float* __restrict__ dacs,          \
                                         Rows R) {                                                                    \
    ssd_dy<T, E>(dy, raw, acs, dyo, dyh, dacs, R);                                                             \
  }                                                                                                            \
  extern "C" __global__ void __maxnreg__(ROWS_REGS) ssd_dx##E##_##S(const T* __restrict__ dxw, const T* __restrict__ x, \
                                         const float* __restrict__ w, const T* __restrict__ dxdiag,                   \
                                         T* __restrict__ dxdt, float* __restrict__ dws, Rows R) {                     \
    ssd_dx<T, E>(dxw, x, w, dxdiag, dxdt, dws, R);                                                             \
  }
#define SSD_ROWS(S, T) SSD_ROWS_E(S, T, 2) SSD_ROWS_E(S, T, 4) SSD_ROWS_E(S, T, 8)
BOTH_KINDS(SSD_ROWS)
