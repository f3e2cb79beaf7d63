//! Is configuration B better than A? Paired bootstrap over documents: the documents are drawn
//! again with replacement many times, and the difference of the means is read off at the
//! 2.5th and 97.5th percentiles. "Better" is only said when that interval excludes 0.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use serde_json::{Value, json};

use super::score::DocumentScores;
use super::{EvalReport, REPORT_SCHEMA_VERSION};

/// Fewest documents a verdict is given on.
pub const MIN_DOCUMENTS: usize = 5;

/// Resamples drawn (enough for stable 95% bounds; seeded, so a report repeats exactly).
pub const RESAMPLES: usize = 2000;

/// A per-document figure two configurations are compared on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Strict entity F1.
    EntityF1,
    /// Mean normalized metadata score over the gold's fields.
    Metadata,
    /// Mean ROUGE-L over the reference summaries (unanswered: 0).
    RougeL,
    /// Share of summary sentences backed by their section (no reference needed).
    Support,
}

impl Metric {
    /// All of them.
    pub const ALL: [Metric; 4] = [
        Metric::EntityF1,
        Metric::Metadata,
        Metric::RougeL,
        Metric::Support,
    ];

    /// The figure for one document, when its gold allows it.
    pub fn of(self, d: &DocumentScores) -> Option<f64> {
        match self {
            Metric::EntityF1 => d.entities.as_ref().map(|e| e.strict.f1()),
            Metric::Metadata => (!d.metadata.is_empty()).then(|| {
                d.metadata.iter().map(|f| f.normalized).sum::<f64>() / d.metadata.len() as f64
            }),
            Metric::RougeL => (!d.summaries.is_empty()).then(|| {
                d.summaries
                    .iter()
                    .map(|(_, r)| r.map_or(0.0, |r| r.rouge_l))
                    .sum::<f64>()
                    / d.summaries.len() as f64
            }),
            Metric::Support => d.summary_checks.support(),
        }
    }

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Metric::EntityF1 => "entity F1",
            Metric::Metadata => "metadata",
            Metric::RougeL => "ROUGE-L",
            Metric::Support => "source support",
        }
    }
}

/// B minus A on one metric, over the documents both scored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Difference {
    /// Which figure.
    pub metric: Metric,
    /// Documents in the comparison.
    pub documents: usize,
    /// Mean of B − A.
    pub mean: f64,
    /// 95% interval of the mean difference (paired bootstrap by document).
    pub low: f64,
    /// Upper end.
    pub high: f64,
}

impl Difference {
    /// B is better (+1), worse (−1), or not told apart (0) at 95%. Under [`MIN_DOCUMENTS`]
    /// documents, never told apart: resampling two or three documents gives an interval far
    /// narrower than the truth (two documents both worse bound it away from 0).
    pub fn verdict(&self) -> i8 {
        self.told()
    }

    /// [`Difference::verdict`] as a word: `better`, `worse`, `not_told_apart`, or
    /// `too_few_documents` to tell.
    pub fn verdict_name(&self) -> &'static str {
        match self.told() {
            1 => "better",
            -1 => "worse",
            _ if self.documents < MIN_DOCUMENTS => "too_few_documents",
            _ => "not_told_apart",
        }
    }

    fn told(&self) -> i8 {
        if self.documents < MIN_DOCUMENTS {
            0
        } else if self.low > 0.0 {
            1
        } else if self.high < 0.0 {
            -1
        } else {
            0
        }
    }
}

/// B − A on `metric`, paired by document; `None` when no document has the figure in both.
pub fn difference(a: &EvalReport, b: &EvalReport, metric: Metric) -> Option<Difference> {
    let diffs: Vec<f64> = a
        .documents
        .iter()
        .filter_map(|da| {
            let db = b.documents.iter().find(|d| d.document == da.document)?;
            Some(metric.of(db)? - metric.of(da)?)
        })
        .collect();
    if diffs.is_empty() {
        return None;
    }
    let n = diffs.len();
    let mean = diffs.iter().sum::<f64>() / n as f64;
    let mut rng = SmallRng::seed_from_u64(0x9e37_79b9);
    let mut means: Vec<f64> = (0..RESAMPLES)
        .map(|_| (0..n).map(|_| diffs[rng.random_range(0..n)]).sum::<f64>() / n as f64)
        .collect();
    means.sort_by(f64::total_cmp);
    let at = |q: f64| means[((q * (RESAMPLES - 1) as f64).round() as usize).min(RESAMPLES - 1)];
    Some(Difference {
        metric,
        documents: n,
        mean,
        low: at(0.025),
        high: at(0.975),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::score::FieldScore;

    fn report(scores: &[(&str, f64)]) -> EvalReport {
        let documents = scores
            .iter()
            .map(|(name, s)| DocumentScores {
                document: (*name).to_owned(),
                id: String::new(),
                entities: None,
                metadata: vec![FieldScore {
                    field: "title".into(),
                    exact: *s,
                    normalized: *s,
                }],
                summaries: vec![],
                summary_checks: Default::default(),
                errors: Vec::new(),
            })
            .collect();
        EvalReport {
            schema_version: 1,
            documents,
            unmatched: vec![],
            entities: None,
            metadata: Default::default(),
            summaries: None,
            summary_checks: Default::default(),
        }
    }

    #[test]
    fn a_difference_is_only_told_when_its_interval_excludes_zero() {
        let names: Vec<String> = (0..20).map(|i| format!("d{i}")).collect();
        let a = report(&names.iter().map(|n| (n.as_str(), 0.5)).collect::<Vec<_>>());
        // Better on every document: the interval is above 0.
        let better: Vec<(&str, f64)> = names.iter().map(|n| (n.as_str(), 0.7)).collect();
        let d = difference(&a, &report(&better), Metric::Metadata).unwrap();
        assert!((d.mean - 0.2).abs() < 1e-12);
        assert_eq!((d.verdict(), d.documents), (1, 20));
        // Better on half, worse on half: no verdict.
        let mixed: Vec<(&str, f64)> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), if i % 2 == 0 { 0.9 } else { 0.1 }))
            .collect();
        let d = difference(&a, &report(&mixed), Metric::Metadata).unwrap();
        assert!(d.low < 0.0 && d.high > 0.0, "{d:?}");
        assert_eq!(d.verdict(), 0);
        // Worse on both of two documents: too few to tell.
        let two = report(&[("d0", 0.5), ("d1", 0.5)]);
        let two_worse = report(&[("d0", 0.1), ("d1", 0.2)]);
        let d = difference(&two, &two_worse, Metric::Metadata).unwrap();
        assert!(d.high < 0.0);
        assert_eq!(d.verdict(), 0);
        // Nothing to compare on.
        assert!(difference(&a, &report(&[]), Metric::Metadata).is_none());
        assert!(difference(&a, &a, Metric::EntityF1).is_none());
    }
}

/// One number for a configuration's quality: the mean of the figures its gold allows (strict
/// entity micro F1, mean normalized metadata score, mean ROUGE-L), each over all documents.
pub fn overall(report: &EvalReport) -> Option<f64> {
    let mut figures = Vec::new();
    if let Some(e) = &report.entities {
        figures.push(e.strict.f1());
    }
    if !report.metadata.is_empty() {
        figures.push(
            report.metadata.values().map(|m| m.normalized).sum::<f64>()
                / report.metadata.len() as f64,
        );
    }
    if let Some(s) = &report.summaries {
        figures.push(s.rouge.rouge_l);
    }
    (!figures.is_empty()).then(|| figures.iter().sum::<f64>() / figures.len() as f64)
}

/// What each run cost a page, from its `run-summary.json` figures: dollars when every run
/// knows them (`true`), else prompt + completion tokens; unknown is infinitely costly.
pub fn costs_per_page(runs: &[&serde_json::Value]) -> (Vec<f64>, bool) {
    let by_dollars = runs.iter().all(|r| r["cost_per_page_usd"].is_number());
    let costs = runs
        .iter()
        .map(|r| {
            let n = |k: &str| r[k].as_f64().unwrap_or(f64::INFINITY);
            if by_dollars {
                n("cost_per_page_usd")
            } else {
                n("prompt_tokens_per_page") + n("completion_tokens_per_page")
            }
        })
        .collect();
    (costs, by_dollars)
}

/// One configuration, scored: what `pagemill eval` compares.
#[derive(Debug, Clone)]
pub struct Scored {
    /// How it is named in tables.
    pub name: String,
    /// Endpoint, pack, prompt profile and format (run mode), or the results directory.
    pub setting: Value,
    /// Its scores against the gold.
    pub report: EvalReport,
    /// Tokens, cost and latency a page (a [`super::spend::Spend`], or a run summary's figures).
    pub run: Value,
}

/// Configurations side by side: each against the first, and the Pareto front of cost against
/// overall quality.
#[derive(Debug, Clone)]
pub struct Comparison {
    /// Per configuration after the first, on each metric both have: its name and B − A.
    pub differences: Vec<(String, Difference)>,
    /// Whether each configuration is on the Pareto front.
    pub front: Vec<bool>,
    /// Each configuration's [`overall`] quality (0 when it has none).
    pub quality: Vec<f64>,
    /// Costs are dollars a page (else prompt + completion tokens a page).
    pub by_dollars: bool,
}

/// Compares `configs`: each with the first, paired by document, and all on cost and quality.
pub fn compare(configs: &[Scored]) -> Comparison {
    let differences = match configs.first() {
        None => Vec::new(),
        Some(first) => configs
            .iter()
            .skip(1)
            .flat_map(|c| {
                Metric::ALL
                    .iter()
                    .filter_map(|&m| difference(&first.report, &c.report, m))
                    .map(|d| (c.name.clone(), d))
                    .collect::<Vec<_>>()
            })
            .collect(),
    };
    let runs: Vec<&Value> = configs.iter().map(|c| &c.run).collect();
    let (costs, by_dollars) = costs_per_page(&runs);
    let quality: Vec<f64> = configs
        .iter()
        .map(|c| overall(&c.report).unwrap_or(0.0))
        .collect();
    let points: Vec<(f64, f64)> = costs.into_iter().zip(quality.iter().copied()).collect();
    Comparison {
        differences,
        front: pareto_front(&points),
        quality,
        by_dollars,
    }
}

impl Comparison {
    /// The eval report (`schemas/eval-report.schema.json`): one configuration's report with its
    /// run figures, or every configuration with its setting, overall quality and place on the
    /// front, and the differences with their verdicts.
    pub fn to_json(&self, configs: &[Scored]) -> Result<Value, serde_json::Error> {
        let with_run = |c: &Scored| -> Result<Value, serde_json::Error> {
            let mut v = serde_json::to_value(&c.report)?;
            v["run"] = c.run.clone();
            Ok(v)
        };
        if let [only] = configs {
            return with_run(only);
        }
        let mut list = Vec::new();
        for ((c, on_front), quality) in configs.iter().zip(&self.front).zip(&self.quality) {
            list.push(
                json!({"results": c.name, "setting": c.setting, "report": with_run(c)?,
                             "overall": quality, "pareto_front": on_front}),
            );
        }
        let against = configs.first().map(|c| c.name.as_str()).unwrap_or_default();
        let mut diffs = Vec::new();
        for (name, d) in &self.differences {
            let mut v = serde_json::to_value(d)?;
            v["verdict"] = json!(d.verdict_name());
            v["results"] = json!(name);
            v["against"] = json!(against);
            diffs.push(v);
        }
        Ok(json!({"schema_version": REPORT_SCHEMA_VERSION,
                  "configurations": list, "differences": diffs}))
    }
}

/// Which of `(cost, quality)` points are on the Pareto front: no other point is at most as
/// costly and at least as good, and strictly one of the two.
pub fn pareto_front(points: &[(f64, f64)]) -> Vec<bool> {
    points
        .iter()
        .map(|&(c, q)| {
            !points
                .iter()
                .any(|&(c2, q2)| c2 <= c && q2 >= q && (c2 < c || q2 > q))
        })
        .collect()
}

#[cfg(test)]
mod front_tests {
    use super::*;

    #[test]
    fn the_front_holds_what_nothing_beats_on_both_cost_and_quality() {
        let points = [(1.0, 0.5), (2.0, 0.7), (2.0, 0.6), (3.0, 0.7), (0.5, 0.2)];
        assert_eq!(pareto_front(&points), [true, true, false, false, true]);
        assert_eq!(
            pareto_front(&[(1.0, 0.5), (1.0, 0.5)]),
            [true, true],
            "ties both stay"
        );
    }
}
