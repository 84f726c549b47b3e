/* CPU kernels in float32: the ensemble MLP's forward pass and its backward with the SGD update, softmax +
 * cross-entropy with its gradient, and the per-row figures of softmax outputs for the curves.
 *
 * Built and loaded by bench/kernels.py (which says when they are used and why). Every member's step runs on
 * one core from start to end (OpenMP over members, on the OpenMP runtime torch already loaded), its operands
 * staying in that core's caches; torch would run ~30 small operations a step instead, each paying dispatch
 * and a fork/join of its threads.
 *
 * Layouts (row-major float32, what bench.models.EnsembleMLP holds): layer l maps w[l] to w[l+1] features,
 * weight W[l] [K, w[l], w[l+1]] and bias b[l] [K, w[l+1]] contiguous; the input x [K, B, w[0]] has contiguous
 * rows and member stride x_stride (0: every member reads the same rows); the hidden activations
 * H[l] [K, B, w[l+1]] (l < L-1) and the output z [K, B, w[L]] are contiguous.
 */
#include <math.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#else  /* a compiler without OpenMP: the members one after another, on one thread */
static int omp_get_thread_num(void) { return 0; }
#endif

typedef float v16 __attribute__((vector_size(64)));                 /* one AVX-512 register (or 2-4 narrower) */
typedef float v16u __attribute__((vector_size(64), aligned(4)));    /* the same, for unaligned loads and stores */

enum { RELU = 0, TANH = 1 };  /* hidden activations: bench/kernels.py ACTIVATIONS */

/* What a gemm does with its products on the way out: C = alpha A @ B (+ C where accumulate) (+ bias[j] where
 * bias) (relu where relu). The forward pass adds its bias and relu here, not in another pass over C. */
typedef struct { float alpha; int accumulate; const float *bias; int relu; } epilogue;

typedef int v16i __attribute__((vector_size(64)));

/* C[rt x 16nv] = e(A[rt x P] @ B[P x 16nv]); A element (r, p) at A[r*ars + p*aps], B rows bs apart, C rows cs
 * apart, e.bias at this block's first column; the first jn columns of C are written. Always inlined with
 * constant rt and nv (rt <= 8, nv <= 2), so that the rt x nv accumulators stay in registers (16 of 32). */
static inline __attribute__((always_inline)) void tile(const int rt, const int nv, int P, const float *restrict A,
        long ars, long aps, const float *restrict B, long bs, float *restrict C, long cs, epilogue e, int jn)
{
    v16 acc[8][2];
    for (int r = 0; r < rt; r++)
        for (int v = 0; v < nv; v++) acc[r][v] = (v16){0};
    for (int p = 0; p < P; p++) {
        v16 b[2];
        for (int v = 0; v < nv; v++) b[v] = *(const v16u *)(B + p * bs + 16 * v);
        for (int r = 0; r < rt; r++) {
            float a = A[r * ars + p * aps];
            for (int v = 0; v < nv; v++) acc[r][v] += a * b[v];
        }
    }
    for (int r = 0; r < rt; r++) {
        float *c = C + r * cs;
        for (int v = 0; v < nv; v++) {
            v16 out = e.alpha * acc[r][v];
            if (jn == 16 * nv) {
                if (e.accumulate) out += *(v16u *)(c + 16 * v);
                if (e.bias) out += *(const v16u *)(e.bias + 16 * v);
                if (e.relu) out = (v16)((v16i)out & ~(out < 0.0f));  /* 0 where negative; NaN stays, as in torch */
                *(v16u *)(c + 16 * v) = out;
            } else {  /* the last, narrower block: nv == 1 */
                float part[16];
                memcpy(part, &out, sizeof part);
                for (int j = 0; j < jn; j++) {
                    float o = part[j] + (e.accumulate ? c[j] : 0.0f) + (e.bias ? e.bias[j] : 0.0f);
                    c[j] = e.relu && o < 0.0f ? 0.0f : o;
                }
            }
        }
    }
}

/* all rows of one column block: eight at a time (measured 8 % faster a step than four), then four, then one */
static inline __attribute__((always_inline)) void column_block(const int nv, int M, int P, const float *A, long ars,
        long aps, const float *B, long bs, float *C, long cs, epilogue e, int jn)
{
    int r = 0;
    for (; r + 8 <= M; r += 8) tile(8, nv, P, A + r * ars, ars, aps, B, bs, C + r * cs, cs, e, jn);
    for (; r + 4 <= M; r += 4) tile(4, nv, P, A + r * ars, ars, aps, B, bs, C + r * cs, cs, e, jn);
    for (; r < M; r++) tile(1, nv, P, A + r * ars, ars, aps, B, bs, C + r * cs, cs, e, jn);
}

/* the epilogue of the column block starting at column j */
static epilogue from_column(epilogue e, int j)
{
    if (e.bias) e.bias += j;
    return e;
}

/* C[M x N] = e(A[M x P] @ B[P x N]), strides as in `tile`. pad: P * 16 floats of scratch for the last N % 16
 * columns, copied there zero-padded (a full-width load must not run past B). */
static void gemm(int M, int N, int P, const float *A, long ars, long aps, const float *B, long bs,
                 float *C, long cs, epilogue e, float *pad)
{
    int j = 0;
    for (; j + 32 <= N; j += 32) column_block(2, M, P, A, ars, aps, B + j, bs, C + j, cs, from_column(e, j), 32);
    for (; j + 16 <= N; j += 16) column_block(1, M, P, A, ars, aps, B + j, bs, C + j, cs, from_column(e, j), 16);
    if (j < N) {
        int jn = N - j;
        for (int p = 0; p < P; p++)
            for (int q = 0; q < 16; q++) pad[p * 16 + q] = q < jn ? B[p * bs + j + q] : 0.0f;
        column_block(1, M, P, A, ars, aps, pad, 16, C + j, cs, from_column(e, j), jn);
    }
}

static int widest(int L, const int *w)
{
    int most = 0;
    for (int l = 0; l <= L; l++) most = w[l] > most ? w[l] : most;
    return most;
}

/* floats of scratch one thread needs: two gradient buffers [B, widest], a transposed weight, the gemm pad */
long mlp_scratch_floats(int B, int L, const int *w)
{
    long most = widest(L, w);
    return 2 * B * most + most * most + (B > most ? B : most) * 16;
}

static void forward_member(long k, int B, int L, const int *w, const float *x, float *const *W,
                           float *const *bias, float *const *H, float *z, int act, float *pad)
{
    const float *in = x;
    for (int l = 0; l < L; l++) {
        int m = w[l], n = w[l + 1];
        float *out = (l == L - 1 ? z : H[l]) + k * B * n;
        int hidden = l < L - 1;
        gemm(B, n, m, in, m, 1, W[l] + k * m * n, n, out, n,
             (epilogue){.alpha = 1.0f, .bias = bias[l] + k * n, .relu = hidden && act == RELU}, pad);
        if (hidden && act == TANH)
            for (long e = 0; e < (long)B * n; e++) out[e] = tanhf(out[e]);
        in = out;
    }
}

/* z = the MLP of x for every member; the hidden activations stay in H for mlp_backward */
void mlp_forward(int K, int B, int L, const int *w, const float *x, long x_stride, float *const *W,
                 float *const *bias, float *const *H, float *z, int act, float *scratch, long scratch_floats,
                 int threads)
{
    #pragma omp parallel for num_threads(threads) schedule(static)
    for (long k = 0; k < K; k++)
        forward_member(k, B, L, w, x + k * x_stride, W, bias, H, z, act,
                       scratch + omp_get_thread_num() * scratch_floats);
}

/* From dz [K, B, w[L]] = d objective / dz and the H of the last mlp_forward on the same x: every layer's
 * W -= lr dW, b -= lr db (gW == NULL), or dW, db written to gW, gB. A layer's gradient for the layer below is
 * formed before its own update, with the weight the forward pass used. */
void mlp_backward(int K, int B, int L, const int *w, const float *x, long x_stride, float *const *W,
                  float *const *bias, float *const *H, const float *dz, float lr, float *const *gW,
                  float *const *gB, int act, float *scratch, long scratch_floats, int threads)
{
    #pragma omp parallel for num_threads(threads) schedule(static)
    for (long k = 0; k < K; k++) {
        long most = widest(L, w);
        float *own = scratch + omp_get_thread_num() * scratch_floats;
        float *grads[2] = {own, own + B * most};
        float *transposed = own + 2 * B * most, *pad = transposed + most * most;
        const float *g = dz + k * B * w[L];  /* d objective / d (this layer's output) [B, n] */
        for (int l = L - 1; l >= 0; l--) {
            int m = w[l], n = w[l + 1];
            float *weight = W[l] + k * m * n, *b = bias[l] + k * n;
            const float *in = l ? H[l - 1] + k * B * m : x + k * x_stride;  /* this layer's input [B, m] */
            float *below = grads[l & 1];
            if (l) {  /* below = (g @ weight^T) * act'(in): the weight transposed first, for contiguous rows */
                for (int i = 0; i < m; i++)
                    for (int j = 0; j < n; j++) transposed[j * m + i] = weight[i * n + j];
                gemm(B, m, n, g, n, 1, transposed, m, below, m, (epilogue){.alpha = 1.0f}, pad);
                for (long e = 0; e < (long)B * m; e++)  /* (as torch: relu selects, so a NaN above stays above) */
                    below[e] = act == RELU ? (in[e] > 0.0f ? below[e] : 0.0f) : below[e] * (1.0f - in[e] * in[e]);
            }
            /* dW = in^T @ g, db = the column sums of g (into pad where the update applies them) */
            float *db = gW ? gB[l] + k * n : pad;
            gemm(m, n, B, in, 1, m, g, n, gW ? gW[l] + k * m * n : weight, n,
                 (epilogue){.alpha = gW ? 1.0f : -lr, .accumulate = !gW}, pad);
            for (int j = 0; j < n; j++) db[j] = 0.0f;
            for (int r = 0; r < B; r++)
                for (int j = 0; j < n; j++) db[j] += g[r * n + j];
            if (!gW)
                for (int j = 0; j < n; j++) b[j] -= lr * db[j];
            g = below;
        }
    }
}

/* softmax + categorical cross-entropy of every row, as bench.losses._cce_and_gradient: loss [K, B] =
 * -sum_j t_j log softmax(z)_j and grad [K, B, C] = softmax(z) - t (t: rows summing to 1, member stride
 * t_stride, each row contiguous); z, loss and grad contiguous. */
void softmax_cce(int K, int B, int C, const float *z, const float *t, long t_stride, float *loss, float *grad,
                 int threads)
{
    #pragma omp parallel for num_threads(threads) schedule(static)
    for (long k = 0; k < K; k++) {
        for (long r = 0; r < B; r++) {
            const float *zr = z + (k * B + r) * C, *tr = t + k * t_stride + r * C;
            float *gr = grad + (k * B + r) * C;
            float most = zr[0], sum = 0.0f, cross = 0.0f;
            for (int j = 1; j < C; j++) most = zr[j] > most ? zr[j] : most;
            for (int j = 0; j < C; j++) sum += gr[j] = expf(zr[j] - most);
            float log_sum = logf(sum);
            for (int j = 0; j < C; j++) {
                cross -= tr[j] * (zr[j] - most - log_sum);
                gr[j] = gr[j] / sum - tr[j];
            }
            loss[k * B + r] = cross;
        }
    }
}

/* e^x for x <= 0, in a form the compiler vectorizes: 2^n e^r with n = x / ln 2 rounded, |r| <= ln 2 / 2 (ln 2 in
 * two parts, so that r is exact), e^r by its Taylor polynomial of degree 6 (error below 2e-7 relative, about
 * two float32 ulp); 0 below -87.3, where float32 runs out of normal numbers. */
static inline float exp_nonpositive(float x)
{
    float n = __builtin_rintf((x < -87.3f ? -87.3f : x) * 1.44269504f);
    float r = x - n * 0.693145751953125f - n * 1.428606765330187e-6f;
    float poly = 1.0f + r * (1.0f + r * (0.5f + r * (1.0f / 6 + r * (1.0f / 24 + r * (1.0f / 120 + r * (1.0f / 720))))));
    union { int bits; float value; } scale = {((int)n + 127) << 23};
    return x < -87.3f ? 0.0f : poly * scale.value;
}

#define BLOCK 64  /* rows at a time: the loops over a block's rows run in vector registers */

/* The per-row figures of softmax outputs for the curves (bench.metrics.Curves), in one pass over z: rows of raw
 * outputs over C classes, row r's class c at z[c * class_stride + r] (the classes outermost, as evaluation keeps
 * them), y the true classes of the N rows of each member (row r's is y[r % N]). figures [5, rows]: z_y - max z,
 * p_y, sum_c p_c^2, the units wrong of the 0/1 decisions p_c > 0.5 against the one-hot y (only the largest p can
 * exceed 0.5: [max p > 0.5] + 1 - 2 [p_y > 0.5]), and s = sum_c exp(z_c - max z) (log p_y = z_y - max z - log s);
 * label [rows]: the first index of the largest z. A row with NaN: NaN figures, no unit wrong but one (torch's
 * decisions of NaN are 0), label C - 1 (as bench.losses._first_argmax). */
void softmax_figures(long rows, int N, int C, const float *z, long class_stride, const long *y, float *figures,
                     long *label, int threads)
{
    #pragma omp parallel for num_threads(threads) schedule(static)
    for (long r0 = 0; r0 < rows; r0 += BLOCK) {
        int nr = rows - r0 < BLOCK ? rows - r0 : BLOCK;
        float top[BLOCK], sum[BLOCK], squares[BLOCK], e_true[BLOCK];
        int first[BLOCK], nan[BLOCK], truth[BLOCK];
        for (int i = 0; i < nr; i++) {
            top[i] = z[r0 + i], first[i] = 0, nan[i] = top[i] != top[i], truth[i] = y[(r0 + i) % N];
            sum[i] = squares[i] = e_true[i] = 0.0f;
        }
        for (int c = 1; c < C; c++) {
            const float *zc = z + c * class_stride + r0;
            for (int i = 0; i < nr; i++) {
                nan[i] |= zc[i] != zc[i];
                first[i] = zc[i] > top[i] ? c : first[i];
                top[i] = zc[i] > top[i] ? zc[i] : top[i];
            }
        }
        for (int c = 0; c < C; c++) {
            const float *zc = z + c * class_stride + r0;
            for (int i = 0; i < nr; i++) {
                float e = exp_nonpositive(zc[i] - top[i]);
                sum[i] += e;
                squares[i] += e * e;
                e_true[i] += truth[i] == c ? e : 0.0f;
            }
        }
        for (int i = 0; i < nr; i++) {
            long r = r0 + i;
            float p_y = e_true[i] / sum[i];
            figures[r] = nan[i] ? NAN : z[truth[i] * class_stride + r] - top[i];
            figures[rows + r] = nan[i] ? NAN : p_y;
            figures[2 * rows + r] = nan[i] ? NAN : squares[i] / (sum[i] * sum[i]);
            figures[3 * rows + r] = nan[i] ? 1.0f : (float)(sum[i] < 2.0f) + 1.0f - 2.0f * (float)(p_y > 0.5f);
            figures[4 * rows + r] = nan[i] ? NAN : sum[i];
            label[r] = nan[i] ? C - 1 : first[i];
        }
    }
}
