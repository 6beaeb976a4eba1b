/* One-pass evaluation kernels of cadence.nn.norm, built at first use by kernels.py.
 *
 * With torch's kernels, DeepNorm and Batch-Channel Normalization are two normalizations
 * each: the first writes a whole intermediate tensor to memory and the second reads it
 * back. Here each row (DeepNorm) or group (Batch-Channel Normalization) is normalized
 * while it sits in the cache, so the input is read from memory once and the output
 * written once. The variance is taken after subtracting the mean (two passes over the
 * cached row), as in the layers' reference paths.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

/* sigma2 = mean((v - mu)^2) of n values: the variance after subtracting the mean */
static inline float variance(const float *v, int64_t n, float mu) {
    float squares = 0.f;
#pragma omp simd reduction(+ : squares)
    for (int64_t i = 0; i < n; i++) {
        float d = v[i] - mu;
        squares += d * d;
    }
    return squares / (float)n;
}

/* DeepNorm (Wang et al., arXiv:2203.00555) of `rows` rows of `n` values:
 *
 *   s = alpha x_l + G(x_l)
 *   mu = mean(s),  sigma2 = mean((s - mu)^2)
 *   x_{l+1} = gamma (s - mu) / sqrt(sigma2 + eps) + beta
 */
void deep_norm(const float *x, const float *gx, float alpha, const float *gamma, const float *beta, float eps,
               float *out, int64_t rows, int64_t n) {
    for (int64_t r = 0; r < rows; r++) {
        const float *x_r = x + r * n, *gx_r = gx + r * n;
        float *s = out + r * n;
        float sum = 0.f;
#pragma omp simd reduction(+ : sum)
        for (int64_t i = 0; i < n; i++) {
            s[i] = alpha * x_r[i] + gx_r[i];
            sum += s[i];
        }
        float mu = sum / (float)n;
        float rstd = 1.f / sqrtf(variance(s, n, mu) + eps);
#pragma omp simd
        for (int64_t i = 0; i < n; i++) s[i] = gamma[i] * ((s[i] - mu) * rstd) + beta[i];
    }
}

/* Batch-Channel Normalization (Qiao et al., arXiv:1903.10520) in evaluation, of `samples`
 * samples of `groups` groups of `channels` channels of `positions` values each. The batch
 * normalization with its estimates mu_hat_c, sigma2_hat_c is an affine map per channel c,
 *
 *   x_dot = a_c x + b_c,  a_c = gamma_c / sqrt(sigma2_hat_c + eps_bn),  b_c = beta_c - a_c mu_hat_c
 *
 * and the channel normalization normalizes each sample's group g:
 *
 *   mu_g = mean(x_dot),  sigma2_g = mean((x_dot - mu_g)^2)
 *   y = gamma_g (x_dot - mu_g) / sqrt(sigma2_g + eps_cn) + beta_g
 *
 * A sample's groups go through each step together, so that their independent reductions
 * overlap (a group of a [B, C] input is only C / G values). Returns -1 when out of memory.
 */
int batch_channel_norm(const float *x, const float *mu_hat, const float *sigma2_hat, const float *gamma_c,
                        const float *beta_c, float eps_bn, const float *gamma_g, const float *beta_g, float eps_cn,
                        float *out, int64_t samples, int64_t groups, int64_t channels, int64_t positions) {
    int64_t C = groups * channels, size = channels * positions;
    float *a = malloc(sizeof(float) * (2 * C + 2 * groups));
    if (a == NULL) return -1;
    float *b = a + C, *mu = b + C, *scale = mu + groups;
    for (int64_t c = 0; c < C; c++) {
        a[c] = gamma_c[c] / sqrtf(sigma2_hat[c] + eps_bn);
        b[c] = beta_c[c] - a[c] * mu_hat[c];
    }
    for (int64_t n = 0; n < samples; n++) {
        const float *x_n = x + n * C * positions;
        float *x_dot = out + n * C * positions;
        for (int64_t g = 0; g < groups; g++) {
            float sum = 0.f;
            if (positions == 1) { /* [B, C] inputs: a group's channels are consecutive values */
#pragma omp simd reduction(+ : sum)
                for (int64_t c = g * channels; c < (g + 1) * channels; c++) {
                    x_dot[c] = a[c] * x_n[c] + b[c];
                    sum += x_dot[c];
                }
            } else {
                for (int64_t c = g * channels; c < (g + 1) * channels; c++) {
                    const float a_c = a[c], b_c = b[c], *x_c = x_n + c * positions;
                    float *x_dot_c = x_dot + c * positions;
#pragma omp simd reduction(+ : sum)
                    for (int64_t i = 0; i < positions; i++) {
                        x_dot_c[i] = a_c * x_c[i] + b_c;
                        sum += x_dot_c[i];
                    }
                }
            }
            mu[g] = sum / (float)size;
        }
        for (int64_t g = 0; g < groups; g++)
            scale[g] = gamma_g[g] / sqrtf(variance(x_dot + g * size, size, mu[g]) + eps_cn);
        for (int64_t g = 0; g < groups; g++) {
            float *x_dot_g = x_dot + g * size;
            const float mu_g = mu[g], scale_g = scale[g], beta = beta_g[g];
#pragma omp simd
            for (int64_t i = 0; i < size; i++) x_dot_g[i] = (x_dot_g[i] - mu_g) * scale_g + beta;
        }
    }
    free(a);
    return 0;
}
