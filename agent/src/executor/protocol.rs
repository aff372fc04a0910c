//! The stdout protocol of a job process: `SATURN step=N`, `SATURN checkpoint step=N`
//! and `SATURN metric NAME=VALUE`, found anywhere in a line.
//!
//! "Anywhere" matters because real scripts print through loggers that prefix a
//! timestamp or a rank (`[rank0] 12:00:01 SATURN step=5`). Malformed reports are
//! ignored, never an error: a job's output is not ours to reject.

/// One report found in a line of a job's stdout.
#[derive(Debug, Clone, PartialEq)]
pub enum Report {
    /// `SATURN step=N`: N steps are done in total.
    Step(u64),
    /// `SATURN checkpoint step=N`: a checkpoint at step N is durable.
    Checkpoint(u64),
    /// `SATURN metric NAME=VALUE`: a named, finite number such as `loss=2.31`.
    Metric {
        /// Metric name (letters, digits, `_`, `.`, `-`, `/`, `:`).
        name: String,
        /// Metric value.
        value: f64,
    },
}

/// Longest metric name accepted; longer ones are ignored so a job cannot grow our
/// per-metric state without bound.
const MAX_METRIC_NAME: usize = 64;

/// Finds the first well-formed report in `line`, if any.
pub fn parse_line(line: &str) -> Option<Report> {
    let mut rest = line;
    while let Some(found) = rest.find("SATURN ") {
        let before = rest[..found].chars().next_back();
        let after = &rest[found + "SATURN ".len()..];
        if !before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            if let Some(report) = parse_report(after) {
                return Some(report);
            }
        }
        rest = after;
    }
    None
}

/// Parses what follows `SATURN `.
fn parse_report(text: &str) -> Option<Report> {
    let mut words = text.split_whitespace();
    match words.next()? {
        "checkpoint" => parse_step(words.next()?).map(Report::Checkpoint),
        "metric" => parse_metric(words.next()?),
        word => parse_step(word).map(Report::Step),
    }
}

fn parse_step(word: &str) -> Option<u64> {
    word.strip_prefix("step=")?.parse().ok()
}

fn parse_metric(word: &str) -> Option<Report> {
    let (name, value) = word.split_once('=')?;
    let name_ok = !name.is_empty()
        && name.len() <= MAX_METRIC_NAME
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-/:".contains(c));
    let value: f64 = value.parse().ok()?;
    (name_ok && value.is_finite()).then(|| Report::Metric { name: name.to_owned(), value })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn plain_reports() {
        assert_eq!(parse_line("SATURN step=5"), Some(Report::Step(5)));
        assert_eq!(parse_line("SATURN checkpoint step=40"), Some(Report::Checkpoint(40)));
        assert_eq!(
            parse_line("SATURN metric loss=2.31"),
            Some(Report::Metric { name: "loss".into(), value: 2.31 })
        );
    }

    #[test]
    fn reports_behind_a_logger_prefix() {
        assert_eq!(parse_line("[rank0] 2026-11-26 21:03:00 INFO SATURN step=12"), Some(Report::Step(12)));
        assert_eq!(parse_line("12:00 | SATURN checkpoint step=7 (took 2s)"), Some(Report::Checkpoint(7)));
        assert_eq!(
            parse_line("epoch 1: SATURN metric val/acc=0.91"),
            Some(Report::Metric { name: "val/acc".into(), value: 0.91 })
        );
    }

    #[test]
    fn malformed_reports_are_ignored() {
        for line in [
            "SATURN step=",
            "SATURN step=-3",
            "SATURN step=1.5",
            "SATURN step = 5",
            "SATURN checkpoint",
            "SATURN checkpoint step=x",
            "SATURN metric loss",
            "SATURN metric =1",
            "SATURN metric loss=NaN",
            "SATURN metric loss=inf",
            "SATURN metric lo$$=1",
            "XSATURN step=5",
            "saturn step=5",
            "",
        ] {
            assert_eq!(parse_line(line), None, "{line:?}");
        }
    }

    #[test]
    fn a_bad_report_does_not_hide_a_good_one_later_in_the_line() {
        assert_eq!(parse_line("SATURN step=x SATURN step=9"), Some(Report::Step(9)));
    }

    proptest! {
        #[test]
        fn never_panics(line in ".{0,200}") {
            let _ = parse_line(&line);
        }

        #[test]
        fn finds_a_step_after_any_prefix(prefix in "[^\n]{0,40}", step in any::<u64>()) {
            let line = format!("{prefix} SATURN step={step}");
            let found = parse_line(&line);
            // The prefix may itself hold a valid report, which then comes first.
            prop_assert!(found.is_some());
            if !prefix.contains("SATURN") {
                prop_assert_eq!(found, Some(Report::Step(step)));
            }
        }
    }
}
