//! EigenCAM (SPEC §3): the activation's first principal component, projected back onto the pixels,
//! rectified, min-max scaled and upsampled to the crop. Pure kernels over CHW slices.

use nalgebra::{DMatrix, SymmetricEigen};
use ndarray::{Array2, ArrayView1, ArrayView2};
use serde::{Deserialize, Serialize};

/// The denominator guard of the min-max scaling, exactly pytorch-grad-cam's `scale_cam_image`.
pub const MINMAX_EPS: f32 = 1e-7;

pub use types::SignPolicy;

/// Steps 1–3: the projection `p = M v` (h·w values, row-major pixels) of the centred activation
/// onto its first right singular vector, with the sign policy applied.
///
/// `act` is C×h×w, CHW row-major. Degenerate input (all-zero or constant activation) gives `p = 0`.
pub fn principal_projection(act: &[f32], c: usize, h: usize, w: usize, sign: SignPolicy) -> Vec<f32> {
    let n = h * w;
    assert_eq!(act.len(), c * n, "activation length {} is not C·h·w = {}·{}·{}", act.len(), c, h, w);
    if n == 0 || c == 0 {
        return vec![0.0; n];
    }

    // M (n × C), stored channel-major (one contiguous h·w column per channel, as CHW already is),
    // centred per channel over the pixels. f64 throughout: a Gram matrix squares the condition number.
    let mut m = vec![0.0f64; c * n];
    for ch in 0..c {
        let col = &act[ch * n..(ch + 1) * n];
        let mean = col.iter().map(|&a| a as f64).sum::<f64>() / n as f64;
        for (dst, &a) in m[ch * n..(ch + 1) * n].iter_mut().zip(col) {
            *dst = a as f64 - mean;
        }
    }

    // The top singular pair from the smaller Gram matrix: G = M Mᵀ (n × n) when there are fewer
    // pixels than channels (C = 1280, n = 49: far cheaper than an SVD of M), else Mᵀ M (C × C).
    let p = if n <= c { projection_via_pixel_gram(&m, c, n) } else { projection_via_channel_gram(&m, c, n) };
    let Some(p) = p else {
        // All-zero / constant activation: M = 0 exactly, there is no principal direction.
        return vec![0.0; n];
    };

    let flip = match sign {
        SignPolicy::None => false,
        SignPolicy::MaxAbs => {
            let (lo, hi) = p.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| (lo.min(x), hi.max(x)));
            lo.abs() > hi.abs()
        }
        SignPolicy::Mean => {
            // m_i = mean over channels of the *uncentred* activation at pixel i.
            let mut mean_px = vec![0.0f64; n];
            for ch in 0..c {
                for (mp, &a) in mean_px.iter_mut().zip(&act[ch * n..(ch + 1) * n]) {
                    *mp += a as f64;
                }
            }
            let dot: f64 = p.iter().zip(&mean_px).map(|(pi, mi)| pi * mi / c as f64).sum();
            dot < 0.0
        }
    };
    p.iter().map(|&x| if flip { -x as f32 } else { x as f32 }).collect()
}

/// Top eigenvector of a symmetric matrix, or `None` when the matrix is zero (or not finite).
fn top_eigenvector(g: DMatrix<f64>) -> Option<Vec<f64>> {
    let trace = g.trace();
    if !trace.is_finite() || trace <= 0.0 {
        return None;
    }
    let eig = SymmetricEigen::new(g);
    let top = eig.eigenvalues.imax();
    Some(eig.eigenvectors.column(top).iter().copied().collect())
}

/// `m` (channel-major: C rows of n centred pixels) as the C × n matrix Mᵀ, borrowed.
fn as_channel_rows(m: &[f64], c: usize, n: usize) -> ArrayView2<'_, f64> {
    ArrayView2::from_shape((c, n), m).expect("m holds C·n values")
}

/// A symmetric ndarray matrix as nalgebra's (standard layout, so row- and column-major agree).
fn to_dmatrix(g: Array2<f64>) -> DMatrix<f64> {
    let (r, c) = g.dim();
    DMatrix::from_row_iterator(r, c, g.into_iter())
}

/// `p = M v` via the n × n Gram matrix `M Mᵀ`: its top eigenvector is `u = p / σ`. `m` is the
/// centred activation, channel-major (C columns of n pixels). The products go through ndarray's
/// matrixmultiply kernels (blocked, SIMD): the Gram build was most of EigenCAM's time as scalar loops.
fn projection_via_pixel_gram(m: &[f64], c: usize, n: usize) -> Option<Vec<f64>> {
    let mt = as_channel_rows(m, c, n);
    let u = top_eigenvector(to_dmatrix(mt.t().dot(&mt)))?;
    // v = Mᵀu / ‖Mᵀu‖ and p = M v: one power step on top of the eigenvector, which recovers the
    // accuracy the Gram matrix lost (algebraically p = σu, σ = sqrt(λ_max)).
    let mut v = mt.dot(&ArrayView1::from(&u[..]));
    let norm = v.dot(&v).sqrt();
    if !norm.is_finite() || norm <= 0.0 {
        return None;
    }
    v /= norm;
    Some(mt.t().dot(&v).to_vec())
}

/// `p = M v` with `v` the top eigenvector of the C × C matrix `Mᵀ M` (for maps with more pixels
/// than channels).
fn projection_via_channel_gram(m: &[f64], c: usize, n: usize) -> Option<Vec<f64>> {
    let mt = as_channel_rows(m, c, n);
    let v = top_eigenvector(to_dmatrix(mt.dot(&mt.t())))?;
    Some(mt.t().dot(&ArrayView1::from(&v[..])).to_vec())
}

/// `max(x, 0)` then `(x - min) / (max - min + 1e-7)`, in f32 like pytorch-grad-cam.
fn relu_minmax(x: &mut [f32]) {
    for v in x.iter_mut() {
        *v = v.max(0.0);
    }
    let (lo, hi) = x.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    if x.is_empty() {
        return;
    }
    let den = hi - lo + MINMAX_EPS;
    for v in x.iter_mut() {
        *v = (*v - lo) / den;
    }
}

/// Step 4: `cam_lo = minmax(max(p, 0))`, the h×w map that is stored.
pub fn cam_lo(p: &[f32]) -> Vec<f32> {
    let mut x = p.to_vec();
    relu_minmax(&mut x);
    x
}

/// Bilinear resize with half-pixel centres and edge clamp: `cv2.resize(src, (out_w, out_h),
/// interpolation=cv2.INTER_LINEAR)` = `F.interpolate(mode="bilinear", align_corners=False)` when
/// upsampling. `src` is h×w row-major. (Not antialiased: for downscaling by more than 2 this is
/// *not* what Pillow or torchvision's antialiased resize do, nor cv2's INTER_AREA.)
pub fn upsample_bilinear(src: &[f32], h: usize, w: usize, out_h: usize, out_w: usize) -> Vec<f32> {
    assert_eq!(src.len(), h * w, "source length {} is not h·w = {}·{}", src.len(), h, w);
    if out_h == 0 || out_w == 0 {
        return Vec::new();
    }
    assert!(h > 0 && w > 0, "cannot resize an empty map to {}×{}", out_h, out_w);

    // Per output coordinate: the two source taps and the weight of the second. The source
    // coordinate of output pixel d is (d + 0.5)·(in/out) − 0.5, clamped to [0, in − 1] (cv2 clamps
    // exactly this way, so border pixels replicate rather than fade).
    fn taps(n_in: usize, n_out: usize) -> Vec<(usize, usize, f64)> {
        let scale = n_in as f64 / n_out as f64;
        (0..n_out)
            .map(|d| {
                let x = ((d as f64 + 0.5) * scale - 0.5).clamp(0.0, (n_in - 1) as f64);
                let x0 = x.floor() as usize;
                let x1 = (x0 + 1).min(n_in - 1);
                (x0, x1, x - x0 as f64)
            })
            .collect()
    }
    let tx = taps(w, out_w);
    let ty = taps(h, out_h);

    // Separable: rows first (h × out_w), then columns.
    let mut rows = vec![0.0f64; h * out_w];
    for y in 0..h {
        let s = &src[y * w..(y + 1) * w];
        for (ox, &(x0, x1, f)) in tx.iter().enumerate() {
            rows[y * out_w + ox] = s[x0] as f64 * (1.0 - f) + s[x1] as f64 * f;
        }
    }
    let mut out = vec![0.0f32; out_h * out_w];
    for (oy, &(y0, y1, f)) in ty.iter().enumerate() {
        let r0 = &rows[y0 * out_w..(y0 + 1) * out_w];
        let r1 = &rows[y1 * out_w..(y1 + 1) * out_w];
        for ((o, &a), &b) in out[oy * out_w..(oy + 1) * out_w].iter_mut().zip(r0).zip(r1) {
            *o = (a * (1.0 - f) + b * f) as f32;
        }
    }
    out
}

/// Step 5: upsample `cam_lo` (h×w) to crop×crop, then `max(·, 0)` and min-max again, giving the
/// crop-frame map in [0, 1] (what pytorch-grad-cam's per-layer + aggregate scaling does).
pub fn cam_full(cam_lo: &[f32], h: usize, w: usize, crop: usize) -> Vec<f32> {
    let mut x = upsample_bilinear(cam_lo, h, w, crop, crop);
    relu_minmax(&mut x);
    x
}

/// One variant's EigenCAM for one image.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EigenCam {
    /// Projection after the sign policy, h·w row-major (kept: `rmse_flipped` needs `−p`).
    pub p: Vec<f32>,
    /// h×w map in [0, 1] (stored).
    pub cam_lo: Vec<f32>,
    /// crop×crop map in [0, 1].
    pub cam: Vec<f32>,
}

/// Steps 1–5 in one call.
pub fn eigencam(act: &[f32], c: usize, h: usize, w: usize, sign: SignPolicy, crop: usize) -> EigenCam {
    let p = principal_projection(act, c, h, w, sign);
    let lo = cam_lo(&p);
    let cam = cam_full(&lo, h, w, crop);
    EigenCam { p, cam_lo: lo, cam }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f32, b: f32, tol: f32) -> bool {
        (a - b).abs() <= tol
    }

    /// Rank-one activation: act[c, i] = a_c · q_i + b_c. After centring M = (q − q̄) aᵀ, so the
    /// principal projection is ±‖a‖ (q − q̄), known in closed form.
    #[test]
    fn rank_one_projection_is_closed_form() {
        let (c, h, w) = (3, 2, 2);
        let a = [1.0f32, 2.0, 2.0]; // ‖a‖ = 3
        let b = [0.5f32, -1.0, 4.0];
        let q = [1.0f32, 2.0, 3.0, 6.0]; // mean 3 → q − q̄ = [-2, -1, 0, 3]
        let mut act = vec![0.0f32; c * h * w];
        for ch in 0..c {
            for i in 0..4 {
                act[ch * 4 + i] = a[ch] * q[i] + b[ch];
            }
        }
        // Channel means of the uncentred act correlate positively with q (a > 0), so `mean` keeps +.
        let p = principal_projection(&act, c, h, w, SignPolicy::Mean);
        let want = [-6.0f32, -3.0, 0.0, 9.0];
        for (x, y) in p.iter().zip(want) {
            assert!(close(*x, y, 1e-5), "{:?} vs {:?}", p, want);
        }
        // maxabs: |min| = 6 < |max| = 9, keep +.
        let p = principal_projection(&act, c, h, w, SignPolicy::MaxAbs);
        for (x, y) in p.iter().zip(want) {
            assert!(close(*x, y, 1e-5), "{:?} vs {:?}", p, want);
        }
        // none: either sign, same magnitude.
        let p = principal_projection(&act, c, h, w, SignPolicy::None);
        let s = p[3].signum();
        for (x, y) in p.iter().zip(want) {
            assert!(close(*x * s, y, 1e-5), "{:?} vs ±{:?}", p, want);
        }
        // cam_lo = max(p,0) min-maxed: [0,0,0,9]/(9+1e-7).
        let lo = cam_lo(&[-6.0, -3.0, 0.0, 9.0]);
        assert_eq!(lo[..3], [0.0, 0.0, 0.0]);
        assert!(close(lo[3], 9.0 / (9.0 + 1e-7), 1e-7));
    }

    /// The two sign rules disagree on purpose here: the big excursion is negative (maxabs flips),
    /// but the activation mass sits where p is positive (mean keeps).
    #[test]
    fn sign_policies_follow_their_rules() {
        // One channel: act = q, centred p = ±(q − q̄); q = [4, 4, 4, 0] → q − q̄ = [1, 1, 1, -3].
        let act = [4.0f32, 4.0, 4.0, 0.0];
        let pm = principal_projection(&act, 1, 2, 2, SignPolicy::Mean);
        // Σ p m with p = [1,1,1,-3], m = [4,4,4,0] = 12 > 0 → keep.
        assert!(close(pm[0], 1.0, 1e-6) && close(pm[3], -3.0, 1e-6), "{:?}", pm);
        let pa = principal_projection(&act, 1, 2, 2, SignPolicy::MaxAbs);
        // |min| = 3 > |max| = 1 → flip.
        assert!(close(pa[0], -1.0, 1e-6) && close(pa[3], 3.0, 1e-6), "{:?}", pa);
    }

    /// Both Gram routes give the same projection (up to the solver's sign), on a random matrix
    /// with n < C and with n > C. The reference tests exercise them against numpy's SVD too.
    #[test]
    fn pixel_and_channel_gram_agree() {
        let mut rng = crate::test_rng::XorShift(0x9e3779b97f4a7c15);
        let mut rnd = move || rng.centred_f64();
        for (c, n) in [(7usize, 5usize), (5, 7), (6, 6)] {
            let m: Vec<f64> = (0..c * n).map(|_| rnd()).collect();
            let a = projection_via_pixel_gram(&m, c, n).unwrap();
            let b = projection_via_channel_gram(&m, c, n).unwrap();
            let sgn = if a.iter().zip(&b).map(|(x, y)| x * y).sum::<f64>() < 0.0 { -1.0 } else { 1.0 };
            for (x, y) in a.iter().zip(&b) {
                assert!((x - sgn * y).abs() < 1e-10, "c={c} n={n}: {a:?} vs {b:?}");
            }
            // ‖p‖² = λ_max(MᵀM), which bounds every diagonal entry of MᵀM (Rayleigh quotient).
            let pp: f64 = a.iter().map(|x| x * x).sum();
            for col in m.chunks_exact(n) {
                assert!(pp + 1e-12 >= col.iter().map(|x| x * x).sum::<f64>());
            }
        }
    }

    #[test]
    fn degenerate_activations_give_zero_maps() {
        for act in [vec![0.0f32; 5 * 9], vec![2.5f32; 5 * 9]] {
            for sign in [SignPolicy::Mean, SignPolicy::MaxAbs, SignPolicy::None] {
                let e = eigencam(&act, 5, 3, 3, sign, 8);
                assert_eq!(e.p, vec![0.0; 9]);
                assert_eq!(e.cam_lo, vec![0.0; 9]);
                assert_eq!(e.cam, vec![0.0; 64]);
            }
        }
        // Constant per channel (different constants) is still degenerate after centring.
        let mut act = vec![0.0f32; 2 * 4];
        act[4..].fill(-7.0);
        assert_eq!(principal_projection(&act, 2, 2, 2, SignPolicy::Mean), vec![0.0; 4]);
    }

    /// Hand-computed 2×2 → 4×4: scale 1/2, output d samples source (d + 0.5)/2 − 0.5 =
    /// −0.25, 0.25, 0.75, 1.25 → clamped 0, 0.25, 0.75, 1.
    #[test]
    fn upsample_hand_case() {
        let src = [0.0f32, 1.0, 2.0, 3.0];
        let out = upsample_bilinear(&src, 2, 2, 4, 4);
        let xs = [0.0f32, 0.25, 0.75, 1.0];
        for (oy, &fy) in xs.iter().enumerate() {
            for (ox, &fx) in xs.iter().enumerate() {
                let want = fx * 1.0 + fy * 2.0; // src(x, y) = x + 2y is bilinear-exact
                assert!(close(out[oy * 4 + ox], want, 1e-6), "({oy},{ox}) {} vs {}", out[oy * 4 + ox], want);
            }
        }
        // Same size is the identity; 1×1 source replicates.
        assert_eq!(upsample_bilinear(&src, 2, 2, 2, 2), src.to_vec());
        assert_eq!(upsample_bilinear(&[0.5], 1, 1, 3, 2), vec![0.5; 6]);
    }

    #[test]
    fn cam_full_is_rescaled_to_unit_range() {
        let lo = [0.0f32, 0.0, 0.0, 1.0];
        let cam = cam_full(&lo, 2, 2, 4);
        // Upsampled corner (3,3) = 1, (0,0) = 0; rescaled by (1 − 0 + 1e-7).
        assert!(close(cam[15], 1.0 / (1.0 + 1e-7), 1e-7));
        assert_eq!(cam[0], 0.0);
        // Interior (2,2) samples (0.75, 0.75): 0.75² = 0.5625.
        assert!(close(cam[10], 0.5625, 1e-6), "{}", cam[10]);
    }

    #[test]
    fn sign_policy_serde_names() {
        for (s, name) in [(SignPolicy::Mean, "\"mean\""), (SignPolicy::MaxAbs, "\"maxabs\""), (SignPolicy::None, "\"none\"")] {
            assert_eq!(serde_json::to_string(&s).unwrap(), name);
            assert_eq!(serde_json::from_str::<SignPolicy>(name).unwrap(), s);
        }
        assert_eq!(SignPolicy::default(), SignPolicy::Mean);
    }
}
