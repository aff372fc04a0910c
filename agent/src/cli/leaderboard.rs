//! The sweep leaderboards of `saturn job status`.

use super::table;
use crate::views::SweepView;

/// One table per sweep with early stopping: rank, job, metric value, rung, state.
pub fn render_leaderboards(sweeps: &[SweepView]) -> String {
    let mut out = String::new();
    for sweep in sweeps {
        let stopped = sweep.leaderboard.iter().filter(|e| e.state == "stopped").count();
        out.push_str(&format!(
            "\nsweep {} — {} {} ({}), {} of {} stopped early\n",
            sweep.sweep,
            sweep.rule,
            sweep.metric,
            sweep.mode,
            stopped,
            sweep.leaderboard.len()
        ));
        let rows: Vec<Vec<String>> = sweep
            .leaderboard
            .iter()
            .enumerate()
            .map(|(rank, entry)| {
                vec![
                    (rank + 1).to_string(),
                    entry.id.clone(),
                    entry.name.clone(),
                    entry.value.map_or_else(|| "-".into(), |v| format!("{v:.4}")),
                    entry.rung.map_or_else(|| "-".into(), |r| r.to_string()),
                    entry.steps_done.to_string(),
                    entry.state.clone(),
                ]
            })
            .collect();
        let metric = sweep.metric.to_uppercase();
        out.push_str(&table::render(&["RANK", "ID", "NAME", &metric, "RUNG", "STEPS", "STATE"], &rows));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::views::LeaderboardEntry;

    #[test]
    fn a_leaderboard_lists_rank_metric_rung_and_state() {
        let entry = |id: &str, value: Option<f64>, rung: Option<u64>, state: &str| LeaderboardEntry {
            id: id.into(),
            name: format!("n-{id}"),
            state: state.into(),
            value,
            rung,
            steps_done: 300,
            stop_reason: None,
            rungs: Vec::new(),
        };
        let sweep = SweepView {
            sweep: "vit-bs{bs}@j-000001".into(),
            metric: "loss".into(),
            mode: "min".into(),
            rule: "asha".into(),
            leaderboard: vec![entry("j-1", Some(1.25), Some(900), "completed"), entry("j-2", Some(2.5), Some(100), "stopped")],
        };
        let text = render_leaderboards(&[sweep]);
        assert!(text.contains("asha loss (min), 1 of 2 stopped early"), "{text}");
        // A blank line, the sweep's title, the header, then one row per job, best first.
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert!(lines[2].starts_with("RANK") && lines[2].contains("LOSS"), "{text}");
        assert!(lines[3].starts_with("1 ") && lines[3].contains("1.2500") && lines[3].contains("900") && lines[3].contains("completed"), "{text}");
        assert!(lines[4].starts_with("2 ") && lines[4].contains("2.5000") && lines[4].contains("stopped"), "{text}");
    }
}
