//! Confidence intervals and comparisons: a difference is *significant* when its 95% interval
//! excludes zero.

use crate::results::Estimate;

/// Two-sided 95% critical value of Student's t with `df` degrees of freedom.
pub fn t95(df: f64) -> f64 {
    const TABLE: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    if !df.is_finite() || df >= 1000.0 {
        return 1.960;
    }
    let d = df.floor().max(1.0) as usize;
    match d {
        1..=30 => TABLE[d - 1],
        31..=60 => 2.000,
        61..=120 => 1.980,
        _ => 1.962,
    }
}

/// Mean and 95% confidence half-width of samples.
pub fn estimate(samples: &[f64]) -> Estimate {
    let n = samples.len();
    if n == 0 {
        return Estimate {
            mean: 0.0,
            ci95: 0.0,
            n: 0,
        };
    }
    let mean = samples.iter().sum::<f64>() / n as f64;
    if n < 2 {
        return Estimate {
            mean,
            ci95: 0.0,
            n: 1,
        };
    }
    let var = samples.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    Estimate {
        mean,
        ci95: t95((n - 1) as f64) * (var / n as f64).sqrt(),
        n: n as u64,
    }
}

/// Welch's comparison of two means from their summaries: `(b − a, 95% half-width)`.
pub fn welch(mean_a: f64, sd_a: f64, n_a: u64, mean_b: f64, sd_b: f64, n_b: u64) -> (f64, f64) {
    if n_a < 2 || n_b < 2 {
        return (mean_b - mean_a, f64::INFINITY);
    }
    let (va, vb) = (sd_a * sd_a / n_a as f64, sd_b * sd_b / n_b as f64);
    let se = (va + vb).sqrt();
    let df = if va + vb > 0.0 {
        (va + vb).powi(2) / (va * va / (n_a - 1) as f64 + vb * vb / (n_b - 1) as f64)
    } else {
        f64::INFINITY
    };
    (mean_b - mean_a, t95(df) * se)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_intervals() {
        let e = estimate(&[10.0, 12.0, 14.0]);
        assert!((e.mean - 12.0).abs() < 1e-12);
        // sd = 2, se = 2/sqrt(3), t(2) = 4.303
        assert!((e.ci95 - 4.303 * 2.0 / 3f64.sqrt()).abs() < 1e-9);
        assert_eq!(estimate(&[5.0]).ci95, 0.0);
        assert!((t95(1e6) - 1.96).abs() < 1e-9);
    }

    #[test]
    fn welch_separates_clear_differences_only() {
        let (d, ci) = welch(100.0, 10.0, 1_000, 110.0, 10.0, 1_000);
        assert!((d - 10.0).abs() < 1e-12 && ci < 1.0, "{ci}");
        let (_, ci) = welch(100.0, 50.0, 5, 101.0, 50.0, 5);
        assert!(ci > 1.0);
    }
}
