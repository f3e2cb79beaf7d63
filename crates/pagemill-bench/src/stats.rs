//! Confidence intervals and comparisons: a difference is *significant* when its 95% interval
//! excludes zero.

use crate::results::Estimate;

/// The normal distribution's two-sided 95% critical value.
const Z95: f64 = 1.959_964;

/// Two-sided 95% critical value of Student's t with `df` degrees of freedom (fractional, as
/// Welch's approximation gives): statrs' inverse CDF at 0.975. Beyond 100,000 degrees of
/// freedom (where statrs' inverse loses the fourth digit: 1.95985 at a million) and where `df`
/// is not a finite positive number, the normal value, which t is within 2·10⁻⁵ of there.
pub fn t95(df: f64) -> f64 {
    if !df.is_finite() || df <= 0.0 || df > 1e5 {
        return Z95;
    }
    statrs::distribution::StudentsT::new(0.0, 1.0, df).map_or(Z95, |t| {
        statrs::distribution::ContinuousCDF::inverse_cdf(&t, 0.975)
    })
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
        // sd = 2, se = 2/sqrt(3), t(2) = 4.3027
        assert!((e.ci95 - 4.302_653 * 2.0 / 3f64.sqrt()).abs() < 1e-5);
        assert_eq!(estimate(&[5.0]).ci95, 0.0);
        assert!((t95(1e6) - 1.959_966).abs() < 1e-4, "{}", t95(1e6));
    }

    #[test]
    fn student_t_between_the_table_rows() {
        // Published two-sided 95% values; a table rounding df 31–60 to 2.000 made intervals
        // at df 31 about 2% too narrow (t = 2.0395).
        for (df, t) in [
            (1.0, 12.706),
            (10.0, 2.228),
            (31.0, 2.0395),
            (45.0, 2.0141),
            (120.0, 1.9799),
            (1e4, 1.9602),
        ] {
            assert!((t95(df) - t).abs() < 5e-4, "df {df}: {}", t95(df));
        }
        // Welch's fractional df lies between its neighbours.
        assert!(t95(4.5) < t95(4.0) && t95(4.5) > t95(5.0));
        assert!((t95(f64::NAN) - 1.96).abs() < 1e-3);
    }

    #[test]
    fn welch_separates_clear_differences_only() {
        let (d, ci) = welch(100.0, 10.0, 1_000, 110.0, 10.0, 1_000);
        assert!((d - 10.0).abs() < 1e-12 && ci < 1.0, "{ci}");
        let (_, ci) = welch(100.0, 50.0, 5, 101.0, 50.0, 5);
        assert!(ci > 1.0);
    }
}
