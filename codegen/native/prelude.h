// tilec native backend: helpers shared by every generated kernel (included into its source).
#include <cstdint>
#include <cstring>
#include <cmath>
#include <limits>
#include <algorithm>
#include <vector>
#include <omp.h>

namespace tl {

// ---- 16-bit floats: stored as bit patterns, computed in f32 and rounded after each op
static inline float h2f(uint16_t h) { _Float16 x; std::memcpy(&x, &h, 2); return (float)x; }
static inline uint16_t f2h(float f) { _Float16 x = (_Float16)f; uint16_t h; std::memcpy(&h, &x, 2); return h; }
static inline float rh(float f) { return (float)(_Float16)f; }
static inline float b2f(uint16_t b) { uint32_t u = (uint32_t)b << 16; float f; std::memcpy(&f, &u, 4); return f; }
static inline uint16_t f2b(float f) {   // round to nearest even, NaN stays NaN
    uint32_t u; std::memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
static inline float rb(float f) { return b2f(f2b(f)); }

// ---- numpy's semantics for the few ops C does differently
static inline float mx(float a, float b) { return a != a ? a : (b != b ? b : (a > b ? a : b)); }
static inline float mn(float a, float b) { return a != a ? a : (b != b ? b : (a < b ? a : b)); }
template <class T> static inline T imx(T a, T b) { return a > b ? a : b; }
template <class T> static inline T imn(T a, T b) { return a < b ? a : b; }
// exp as straight-line code the compiler vectorises (Cephes' expf: Cody-Waite reduction by
// ln 2, a degree-6 polynomial, the exponent put in by bits); about 1 ulp, NaN propagates,
// overflow gives inf, and results below the smallest normal float flush to 0.
// e^r for |r| <= ln(2) / 2 (the polynomial), and 2^n for an integer n in [-126, 127] (by bits)
static inline float exp_poly(float r) {
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    return p * r * r + r + 1.0f;
}
static inline float pow2i(float n) {
    const int32_t e = ((int32_t)n + 127) << 23;
    float scale; std::memcpy(&scale, &e, 4);
    return scale;
}
static inline float vexp(float x) {
    const float hi = 88.3762626647949f, lo = -87.3365447505531f;
    const float xc = x > hi ? hi : (x < lo ? lo : x);
    const float n = std::floor(xc * 1.44269504088896341f + 0.5f);
    float y = exp_poly((xc - n * 0.693359375f) + n * 2.12194440e-4f) * pow2i(n);
    y = x > hi ? INFINITY : y;
    y = x < lo ? 0.0f : y;
    return x != x ? x : y;
}
// 2^x the same way: n = round(x), 2^(x - n) = e^((x - n) ln 2) (the base-2 softmax's exp2
// stays vectorised; std::exp2 is a library call per element)
static inline float vexp2(float x) {
    const float hi = 128.0f, lo = -126.0f;
    const float xc = x > hi ? hi : (x < lo ? lo : x);
    const float n = std::floor(xc + 0.5f);
    const float n1 = n > 127.0f ? 127.0f : n;      // 2^128 does not fit the exponent field
    float y = exp_poly((xc - n) * 0.693147180559945309f) * pow2i(n1) * (1.0f + (n - n1));
    y = x > hi ? INFINITY : y;
    y = x < lo ? 0.0f : y;
    return x != x ? x : y;
}
static inline float sigm(float x) { return 1.0f / (1.0f + vexp(-x)); }
template <class T> static inline T idiv(T a, T b, int* err) {     // truncating, as C and Triton
    if (b == 0) { *err = 1; return 0; }
    if (b == (T)-1) return (T)(0 - a);
    return a / b;
}
template <class T> static inline T imod(T a, T b, int* err) {
    if (b == 0) { *err = 1; return 0; }
    if (b == (T)-1) return 0;
    return a % b;
}
template <class T> static inline T f2i(float x) {   // truncation; NaN and overflow as numpy's
    if (!(x == x)) return (T)((uint64_t)1 << (sizeof(T) * 8 - 1));
    double d = std::trunc((double)x);
    const double lo = -(double)((uint64_t)1 << (sizeof(T) * 8 - 1));
    if (d < lo || d >= -lo) return (T)((uint64_t)1 << (sizeof(T) * 8 - 1));
    return (T)d;
}

// ---- dot: C[M, N] = A[M, K] @ B  (f32, accumulated in f32)
// B is either [K, N] row-major ("nn") or W[N, K] read transposed ("nt", a linear layer's
// weight: each C element is a dot product of two contiguous rows). M is the number of rows
// that matter (the caller's live rows); rows past it are not computed. Register-blocked
// micro-kernels on 8-float vectors (GCC vector extensions: AVX2 + FMA at x86-64-v3).
typedef float v8f __attribute__((vector_size(32)));
static inline v8f ld8(const float* p) { v8f v; std::memcpy(&v, p, 32); return v; }
static inline void st8(float* p, v8f v) { std::memcpy(p, &v, 32); }
static inline v8f bc8(float x) { return (v8f){x, x, x, x, x, x, x, x}; }
static inline float hsum8(v8f v) {
    return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
}

static inline void dot_nn(const float* __restrict a, int64_t lda, const float* __restrict b, int64_t ldb,
                          float* __restrict c, int64_t ldc, int64_t M, int64_t N, int64_t K) {
    int64_t j = 0;
    for (; j + 16 <= N; j += 16) {
        int64_t i = 0;
        for (; i + 4 <= M; i += 4) {          // 4 x 16 block of C in 8 registers
            v8f c00 = bc8(0), c01 = bc8(0), c10 = bc8(0), c11 = bc8(0), c20 = bc8(0), c21 = bc8(0),
                c30 = bc8(0), c31 = bc8(0);
            const float* a0 = a + i * lda; const float* a1 = a0 + lda; const float* a2 = a1 + lda;
            const float* a3 = a2 + lda;
            for (int64_t k = 0; k < K; ++k) {
                const v8f b0 = ld8(b + k * ldb + j), b1 = ld8(b + k * ldb + j + 8);
                v8f x = bc8(a0[k]); c00 += x * b0; c01 += x * b1;
                x = bc8(a1[k]); c10 += x * b0; c11 += x * b1;
                x = bc8(a2[k]); c20 += x * b0; c21 += x * b1;
                x = bc8(a3[k]); c30 += x * b0; c31 += x * b1;
            }
            float* r = c + i * ldc + j;
            st8(r, c00); st8(r + 8, c01); r += ldc; st8(r, c10); st8(r + 8, c11); r += ldc;
            st8(r, c20); st8(r + 8, c21); r += ldc; st8(r, c30); st8(r + 8, c31);
        }
        for (; i < M; ++i) {
            v8f c0 = bc8(0), c1 = bc8(0);
            const float* ai = a + i * lda;
            for (int64_t k = 0; k < K; ++k) {
                const v8f x = bc8(ai[k]);
                c0 += x * ld8(b + k * ldb + j); c1 += x * ld8(b + k * ldb + j + 8);
            }
            st8(c + i * ldc + j, c0); st8(c + i * ldc + j + 8, c1);
        }
    }
    for (; j < N; ++j)                        // a column tail: plain dot products
        for (int64_t i = 0; i < M; ++i) {
            float s = 0.f;
            for (int64_t k = 0; k < K; ++k) s += a[i * lda + k] * b[k * ldb + j];
            c[i * ldc + j] = s;
        }
}

// C[i][j] = dot(A row i, W row j): 2 rows of A x 4 rows of W per block (8 accumulators), so
// each W row streams once per pair of A rows and never needs a transposed copy
static inline void dot_nt(const float* __restrict a, int64_t lda, const float* __restrict w, int64_t ldw,
                          float* __restrict c, int64_t ldc, int64_t M, int64_t N, int64_t K,
                          float* __restrict /*scratch*/) {
    const int64_t K8 = K & ~(int64_t)7;
    int64_t i = 0;
    for (; i + 2 <= M; i += 2) {
        const float* a0 = a + i * lda; const float* a1 = a0 + lda;
        int64_t j = 0;
        for (; j + 4 <= N; j += 4) {
            const float* w0 = w + j * ldw; const float* w1 = w0 + ldw; const float* w2 = w1 + ldw;
            const float* w3 = w2 + ldw;
            v8f s00 = bc8(0), s01 = bc8(0), s02 = bc8(0), s03 = bc8(0), s10 = bc8(0), s11 = bc8(0),
                s12 = bc8(0), s13 = bc8(0);
            for (int64_t k = 0; k < K8; k += 8) {
                const v8f x0 = ld8(a0 + k), x1 = ld8(a1 + k);
                v8f y = ld8(w0 + k); s00 += x0 * y; s10 += x1 * y;
                y = ld8(w1 + k); s01 += x0 * y; s11 += x1 * y;
                y = ld8(w2 + k); s02 += x0 * y; s12 += x1 * y;
                y = ld8(w3 + k); s03 += x0 * y; s13 += x1 * y;
            }
            float r[8] = {hsum8(s00), hsum8(s01), hsum8(s02), hsum8(s03),
                          hsum8(s10), hsum8(s11), hsum8(s12), hsum8(s13)};
            for (int64_t k = K8; k < K; ++k) {
                r[0] += a0[k] * w0[k]; r[1] += a0[k] * w1[k]; r[2] += a0[k] * w2[k]; r[3] += a0[k] * w3[k];
                r[4] += a1[k] * w0[k]; r[5] += a1[k] * w1[k]; r[6] += a1[k] * w2[k]; r[7] += a1[k] * w3[k];
            }
            float* c0 = c + i * ldc + j; float* c1 = c0 + ldc;
            c0[0] = r[0]; c0[1] = r[1]; c0[2] = r[2]; c0[3] = r[3];
            c1[0] = r[4]; c1[1] = r[5]; c1[2] = r[6]; c1[3] = r[7];
        }
        for (; j < N; ++j) {
            const float* wj = w + j * ldw;
            v8f s0 = bc8(0), s1 = bc8(0);
            for (int64_t k = 0; k < K8; k += 8) { const v8f y = ld8(wj + k); s0 += ld8(a0 + k) * y; s1 += ld8(a1 + k) * y; }
            float r0 = hsum8(s0), r1 = hsum8(s1);
            for (int64_t k = K8; k < K; ++k) { r0 += a0[k] * wj[k]; r1 += a1[k] * wj[k]; }
            c[i * ldc + j] = r0; c[(i + 1) * ldc + j] = r1;
        }
    }
    for (; i < M; ++i) {
        const float* ai = a + i * lda;
        int64_t j = 0;
        for (; j + 4 <= N; j += 4) {          // 4 rows of W against one row of A
            const float* w0 = w + j * ldw; const float* w1 = w0 + ldw; const float* w2 = w1 + ldw;
            const float* w3 = w2 + ldw;
            v8f s0 = bc8(0), s1 = bc8(0), s2 = bc8(0), s3 = bc8(0);
            for (int64_t k = 0; k < K8; k += 8) {
                const v8f x = ld8(ai + k);
                s0 += x * ld8(w0 + k); s1 += x * ld8(w1 + k); s2 += x * ld8(w2 + k); s3 += x * ld8(w3 + k);
            }
            float r0 = hsum8(s0), r1 = hsum8(s1), r2 = hsum8(s2), r3 = hsum8(s3);
            for (int64_t k = K8; k < K; ++k) {
                r0 += ai[k] * w0[k]; r1 += ai[k] * w1[k]; r2 += ai[k] * w2[k]; r3 += ai[k] * w3[k];
            }
            float* ci = c + i * ldc + j;
            ci[0] = r0; ci[1] = r1; ci[2] = r2; ci[3] = r3;
        }
        for (; j < N; ++j) {
            const float* wj = w + j * ldw;
            v8f s0 = bc8(0);
            for (int64_t k = 0; k < K8; k += 8) s0 += ld8(ai + k) * ld8(wj + k);
            float r = hsum8(s0);
            for (int64_t k = K8; k < K; ++k) r += ai[k] * wj[k];
            c[i * ldc + j] = r;
        }
    }
}

// one thread's scratch memory for tiles, kept across launches (no allocation per launch)
static inline char* arena(size_t bytes) {
    static thread_local std::vector<char> buf;
    if (buf.size() < bytes + 64) buf.resize(bytes + 64);
    uintptr_t p = (uintptr_t)buf.data();
    return (char*)((p + 63) & ~(uintptr_t)63);
}

}  // namespace tl
