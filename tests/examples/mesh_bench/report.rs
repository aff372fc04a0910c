//! Percentiles and the Markdown tables the benchmark prints.

use std::time::Duration;

/// Order statistics of a set of durations.
pub struct Stats {
    pub min: Duration,
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Stats {
    /// Nearest-rank percentiles (zero for no samples).
    pub fn of(mut samples: Vec<Duration>) -> Self {
        samples.sort();
        let at = |p: f64| {
            let rank = ((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len().max(1));
            samples.get(rank - 1).copied().unwrap_or_default()
        };
        Stats { min: at(0.0), p50: at(0.5), p90: at(0.9), p99: at(0.99), max: at(1.0) }
    }
}

pub fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Milliseconds, one decimal below 100.
pub fn ms(d: Duration) -> String {
    let m = millis(d);
    if m < 100.0 {
        format!("{m:.1}")
    } else {
        format!("{m:.0}")
    }
}

/// A Markdown table, printed with aligned columns.
pub struct Table {
    title: String,
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(title: &str, headers: &[&str]) -> Self {
        Table { title: title.to_string(), headers: headers.iter().map(ToString::to_string).collect(), rows: Vec::new() }
    }

    /// How many cells a row has (scale_bench pads the row of a size that failed).
    #[allow(dead_code)]
    pub fn columns(&self) -> usize {
        self.headers.len()
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn print(&self) {
        let widths: Vec<usize> = (0..self.headers.len())
            .map(|c| self.rows.iter().map(|r| r[c].len()).chain([self.headers[c].len()]).max().unwrap_or(0))
            .collect();
        let line = |cells: &[String]| {
            let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
            format!("| {} |", padded.join(" | "))
        };
        println!("\n### {}\n", self.title);
        println!("{}", line(&self.headers));
        println!("{}", line(&widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>()));
        for row in &self.rows {
            println!("{}", line(row));
        }
    }
}
