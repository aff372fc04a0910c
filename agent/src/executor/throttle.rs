//! Rate limiting of progress events: a job printing `SATURN step=` a thousand times a
//! second must not turn into a thousand Raft proposals a second.
//!
//! Pure (time is passed in), so its rules are tested without waiting.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use super::event::ProcessEvent;
use super::protocol::Report;

/// Distinct metric names held between flushes; further names are dropped until the
/// next flush, so a job cannot grow this map without bound.
const MAX_PENDING_METRICS: usize = 32;

/// Holds back `Step` and `Metric` reports so at most one batch is forwarded per
/// interval, always with the latest values; checkpoints pass at once.
#[derive(Debug)]
pub struct Throttle {
    interval: Duration,
    last_flush: Option<Instant>,
    step: Option<(u64, SystemTime)>,
    metrics: BTreeMap<String, f64>,
}

impl Throttle {
    /// A throttle forwarding at most one batch per `interval`.
    pub fn new(interval: Duration) -> Self {
        Self { interval, last_flush: None, step: None, metrics: BTreeMap::new() }
    }

    /// Takes a report that arrived at `now` (`at` in wall-clock time) and returns the
    /// events to forward right away.
    pub fn offer(&mut self, report: Report, now: Instant, at: SystemTime) -> Vec<ProcessEvent> {
        match report {
            Report::Step(step) => self.step = Some((step, at)),
            Report::Metric { name, value } => {
                if self.metrics.len() < MAX_PENDING_METRICS || self.metrics.contains_key(&name) {
                    self.metrics.insert(name, value);
                }
            }
            Report::Checkpoint(step) => {
                // Progress first, so a consumer never sees a checkpoint ahead of the step.
                let mut events = self.flush(now);
                events.push(ProcessEvent::Checkpoint { step });
                return events;
            }
        }
        if self.last_flush.is_none_or(|last| now >= last + self.interval) {
            self.flush(now)
        } else {
            Vec::new()
        }
    }

    /// When held-back values are due; `None` when nothing is held back.
    pub fn deadline(&self) -> Option<Instant> {
        if self.step.is_none() && self.metrics.is_empty() {
            return None;
        }
        // Never flushed means `offer` flushed at once, so there is always a last flush here.
        Some(self.last_flush.map_or_else(Instant::now, |last| last + self.interval))
    }

    /// Forwards everything held back.
    pub fn flush(&mut self, now: Instant) -> Vec<ProcessEvent> {
        let mut events: Vec<ProcessEvent> =
            self.step.take().map(|(step, at)| ProcessEvent::Step { step, at }).into_iter().collect();
        let metrics = std::mem::take(&mut self.metrics);
        events.extend(metrics.into_iter().map(|(name, value)| ProcessEvent::Metric { name, value }));
        if !events.is_empty() {
            self.last_flush = Some(now);
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(events: &[ProcessEvent]) -> Vec<u64> {
        events
            .iter()
            .filter_map(|e| match e {
                ProcessEvent::Step { step, .. } => Some(*step),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn first_step_passes_then_one_batch_per_interval_with_the_latest_value() {
        let mut throttle = Throttle::new(Duration::from_millis(500));
        let t0 = Instant::now();
        let wall = SystemTime::now();
        assert_eq!(steps(&throttle.offer(Report::Step(1), t0, wall)), [1]);
        for step in 2..=50 {
            let now = t0 + Duration::from_millis(step * 5);
            assert!(throttle.offer(Report::Step(step), now, wall).is_empty());
        }
        assert_eq!(throttle.deadline(), Some(t0 + Duration::from_millis(500)));
        assert_eq!(steps(&throttle.flush(t0 + Duration::from_millis(500))), [50]);
        assert_eq!(throttle.deadline(), None);
        let late = t0 + Duration::from_millis(1200);
        assert_eq!(steps(&throttle.offer(Report::Step(51), late, wall)), [51]);
    }

    #[test]
    fn a_checkpoint_passes_at_once_after_the_held_back_step() {
        let mut throttle = Throttle::new(Duration::from_secs(10));
        let t0 = Instant::now();
        let wall = SystemTime::now();
        throttle.offer(Report::Step(1), t0, wall);
        throttle.offer(Report::Step(2), t0, wall);
        let events = throttle.offer(Report::Checkpoint(2), t0, wall);
        assert_eq!(events, [ProcessEvent::Step { step: 2, at: wall }, ProcessEvent::Checkpoint { step: 2 }]);
    }

    #[test]
    fn metrics_keep_the_latest_value_per_name() {
        let mut throttle = Throttle::new(Duration::from_secs(10));
        let t0 = Instant::now();
        let wall = SystemTime::now();
        throttle.offer(Report::Step(1), t0, wall);
        for value in [3.0, 2.5, 2.0] {
            throttle.offer(Report::Metric { name: "loss".into(), value }, t0, wall);
        }
        let events = throttle.flush(t0);
        assert_eq!(events, [ProcessEvent::Metric { name: "loss".into(), value: 2.0 }]);
    }
}
