//! Faults a simulated provider injects: drawn per chat request from the profile's
//! probabilities, or taken in order from its script.

use rand::Rng;

use crate::profile::{Faults, FramingQuirks};

/// One injected fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this 5xx status.
    Status(u16),
    /// Answer 429 with `Retry-After` (`Faults::retry_after_ms`).
    Throttled,
    /// Close the connection before headers.
    ResetBeforeHeaders,
    /// Break the connection halfway through the answer.
    ResetMidStream,
    /// End the stream halfway, with no usage and no `[DONE]`.
    Truncated,
    /// One chunk of broken JSON halfway.
    MalformedChunk,
    /// Delay the headers.
    SlowHeaders,
    /// A framing quirk for this one response.
    Framing(FramingQuirks),
}

impl Fault {
    /// Parses a script entry; `ok` is no fault.
    pub fn parse(name: &str) -> Result<Option<Fault>, crate::SimError> {
        let quirk = |f: fn(&mut FramingQuirks)| {
            let mut q = FramingQuirks::default();
            f(&mut q);
            Some(Fault::Framing(q))
        };
        Ok(match name {
            "ok" => None,
            "status_500" => Some(Fault::Status(500)),
            "status_502" => Some(Fault::Status(502)),
            "status_503" => Some(Fault::Status(503)),
            "status_429" => Some(Fault::Throttled),
            "reset_before_headers" => Some(Fault::ResetBeforeHeaders),
            "reset_mid_stream" => Some(Fault::ResetMidStream),
            "truncated" => Some(Fault::Truncated),
            "malformed_chunk" => Some(Fault::MalformedChunk),
            "slow_headers" => Some(Fault::SlowHeaders),
            "crlf" => quirk(|q| q.crlf = true),
            "no_space" => quirk(|q| q.no_space = true),
            "multiline_data" => quirk(|q| q.multiline_data = true),
            "split_utf8" => quirk(|q| q.split_utf8 = true),
            "late_end" => quirk(|q| q.late_end = true),
            "close_after_stream" => quirk(|q| q.close_after_stream = true),
            other => return Err(crate::SimError::UnknownFault(other.to_owned())),
        })
    }

    /// The name written to the ground-truth log.
    pub fn name(&self) -> String {
        match self {
            Fault::Status(s) => format!("status_{s}"),
            Fault::Throttled => "status_429".into(),
            Fault::ResetBeforeHeaders => "reset_before_headers".into(),
            Fault::ResetMidStream => "reset_mid_stream".into(),
            Fault::Truncated => "truncated".into(),
            Fault::MalformedChunk => "malformed_chunk".into(),
            Fault::SlowHeaders => "slow_headers".into(),
            Fault::Framing(q) => {
                let mut names = Vec::new();
                for (on, n) in [
                    (q.crlf, "crlf"),
                    (q.no_space, "no_space"),
                    (q.multiline_data, "multiline_data"),
                    (q.split_utf8, "split_utf8"),
                    (q.late_end, "late_end"),
                    (q.close_after_stream, "close_after_stream"),
                ] {
                    if on {
                        names.push(n);
                    }
                }
                names.join("+")
            }
        }
    }
}

/// Checks a script before serving, so a typo fails at start-up rather than mid-run.
pub fn validate(faults: &Faults) -> Result<(), crate::SimError> {
    faults
        .script
        .iter()
        .try_for_each(|n| Fault::parse(n).map(|_| ()))
}

/// The fault for the `chat_index`-th chat request: the script's entry, else a draw.
pub fn pick(faults: &Faults, chat_index: u64, rng: &mut impl Rng) -> Option<Fault> {
    if let Some(name) = usize::try_from(chat_index)
        .ok()
        .and_then(|i| faults.script.get(i))
    {
        return Fault::parse(name).ok().flatten();
    }
    let table = [
        (faults.status_429, Fault::Throttled),
        (faults.status_500, Fault::Status(500)),
        (faults.status_502, Fault::Status(502)),
        (faults.status_503, Fault::Status(503)),
        (faults.reset_before_headers, Fault::ResetBeforeHeaders),
        (faults.reset_mid_stream, Fault::ResetMidStream),
        (faults.truncated, Fault::Truncated),
        (faults.malformed_chunk, Fault::MalformedChunk),
        (faults.slow_headers, Fault::SlowHeaders),
    ];
    if table.iter().all(|(p, _)| *p <= 0.0) {
        return None;
    }
    let mut u: f64 = rng.random();
    for (p, fault) in table {
        if u < p {
            return Some(fault);
        }
        u -= p.max(0.0);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    #[test]
    fn the_script_comes_first_then_probabilities() {
        let faults = Faults {
            script: vec!["status_503".into(), "ok".into(), "crlf".into()],
            status_500: 1.0,
            ..Faults::default()
        };
        let mut rng = SmallRng::seed_from_u64(1);
        assert_eq!(pick(&faults, 0, &mut rng), Some(Fault::Status(503)));
        assert_eq!(pick(&faults, 1, &mut rng), None);
        assert_eq!(pick(&faults, 2, &mut rng).unwrap().name(), "crlf");
        assert_eq!(pick(&faults, 3, &mut rng), Some(Fault::Status(500)));
    }

    #[test]
    fn probabilities_are_honoured_and_seeded() {
        let faults = Faults {
            status_503: 0.25,
            truncated: 0.25,
            ..Faults::default()
        };
        let draw = |seed| {
            let mut rng = SmallRng::seed_from_u64(seed);
            (0..10_000)
                .map(|i| pick(&faults, i, &mut rng))
                .collect::<Vec<_>>()
        };
        let a = draw(7);
        assert_eq!(a, draw(7), "same seed, same faults");
        let n503 = a.iter().filter(|f| **f == Some(Fault::Status(503))).count();
        let ntr = a.iter().filter(|f| **f == Some(Fault::Truncated)).count();
        assert!((2_300..2_700).contains(&n503), "{n503}");
        assert!((2_300..2_700).contains(&ntr), "{ntr}");
    }

    #[test]
    fn typos_in_the_script_are_refused() {
        let faults = Faults {
            script: vec!["status_504".into()],
            ..Faults::default()
        };
        assert!(
            validate(&faults)
                .unwrap_err()
                .to_string()
                .contains("status_504")
        );
    }
}
