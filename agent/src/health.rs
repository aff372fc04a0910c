//! Phi-accrual failure detection over heartbeat arrival times (Hayashibara et al., as used
//! by Cassandra and chitchat).
//!
//! Pure: no clock, no I/O. The daemon feeds it the arrival time of every `Heartbeat`
//! gossip and asks, at any instant, how suspicious each peer's silence is. Instead of a
//! fixed timeout, suspicion (`phi`) grows with the silence *relative to that peer's usual
//! heartbeat interval*: `phi = -log10(P(a heartbeat arrives later than now))`. With
//! exponentially distributed intervals of mean `m`, `P = exp(-t/m)`, so
//! `phi = t / (m * ln 10)`. A threshold of 8 means "the chance this peer is merely late is
//! 1e-8"; with heartbeats every 500 ms that is about 9 s of silence.
//!
//! The first few samples are handled with a prior: the mean is smoothed towards
//! `bootstrap_interval` as if `prior_weight` intervals of that length had been seen, so a
//! peer heard from once is neither declared dead after a few milliseconds nor trusted
//! forever.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Tuning of the failure detector.
#[derive(Debug, Clone)]
pub struct FailureDetectorConfig {
    /// A peer whose phi is at or above this is considered dead (8 is the usual choice).
    pub phi_threshold: f64,
    /// How many of the most recent intervals the mean is computed from.
    pub window_size: usize,
    /// The interval assumed before (and blended with) the first real samples.
    pub bootstrap_interval: Duration,
    /// How many samples the bootstrap interval weighs in the mean.
    pub prior_weight: f64,
    /// Intervals longer than this are not sampled: a peer that was gone and came back
    /// should not teach the detector that minute-long silences are normal.
    pub max_interval: Duration,
}

impl Default for FailureDetectorConfig {
    fn default() -> Self {
        Self {
            phi_threshold: 8.0,
            window_size: 100,
            bootstrap_interval: Duration::from_millis(500),
            prior_weight: 5.0,
            max_interval: Duration::from_secs(10),
        }
    }
}

/// Heartbeat history of one peer: the last arrival and a window of recent intervals.
#[derive(Debug, Clone)]
struct ArrivalWindow {
    last_heartbeat: Instant,
    intervals: VecDeque<Duration>,
    /// Sum of `intervals`, kept so the mean costs O(1).
    sum: Duration,
}

impl ArrivalWindow {
    fn new(at: Instant) -> Self {
        Self {
            last_heartbeat: at,
            intervals: VecDeque::new(),
            sum: Duration::ZERO,
        }
    }

    fn record(&mut self, at: Instant, config: &FailureDetectorConfig) {
        // Heartbeats can be reported out of order (two gossip paths); an older one
        // carries no new information about liveness.
        let Some(interval) = at.checked_duration_since(self.last_heartbeat) else {
            return;
        };
        self.last_heartbeat = at;
        if interval > config.max_interval || interval.is_zero() {
            return;
        }
        self.intervals.push_back(interval);
        self.sum += interval;
        while self.intervals.len() > config.window_size.max(1) {
            if let Some(oldest) = self.intervals.pop_front() {
                self.sum -= oldest;
            }
        }
    }

    /// Mean interval in seconds, smoothed towards the bootstrap interval.
    fn mean_secs(&self, config: &FailureDetectorConfig) -> f64 {
        let prior = config.prior_weight.max(0.0);
        let samples = self.intervals.len() as f64;
        let total = self.sum.as_secs_f64() + prior * config.bootstrap_interval.as_secs_f64();
        if samples + prior <= 0.0 {
            return config.bootstrap_interval.as_secs_f64();
        }
        total / (samples + prior)
    }

    fn phi(&self, now: Instant, config: &FailureDetectorConfig) -> f64 {
        let elapsed = now
            .saturating_duration_since(self.last_heartbeat)
            .as_secs_f64();
        let mean = self.mean_secs(config);
        if mean <= 0.0 {
            return f64::INFINITY;
        }
        elapsed / (mean * std::f64::consts::LN_10)
    }
}

/// Phi-accrual failure detector over any peer key (a `PeerId` in the daemon, strings in tests).
#[derive(Debug, Clone)]
pub struct FailureDetector<P> {
    config: FailureDetectorConfig,
    peers: HashMap<P, ArrivalWindow>,
}

impl<P: Eq + Hash + Clone> FailureDetector<P> {
    /// A detector that has heard from no one yet.
    pub fn new(config: FailureDetectorConfig) -> Self {
        Self {
            config,
            peers: HashMap::new(),
        }
    }

    /// The configuration this detector runs with.
    pub fn config(&self) -> &FailureDetectorConfig {
        &self.config
    }

    /// Records that a heartbeat from `peer` arrived at `now`.
    pub fn report_heartbeat(&mut self, peer: &P, now: Instant) {
        match self.peers.get_mut(peer) {
            Some(window) => window.record(now, &self.config),
            None => {
                self.peers.insert(peer.clone(), ArrivalWindow::new(now));
            }
        }
    }

    /// Suspicion level of `peer` at `now`; `None` for a peer never heard from.
    pub fn phi(&self, peer: &P, now: Instant) -> Option<f64> {
        self.peers
            .get(peer)
            .map(|window| window.phi(now, &self.config))
    }

    /// Whether `peer` has been heard from and its phi is below the threshold.
    pub fn is_alive(&self, peer: &P, now: Instant) -> bool {
        self.phi(peer, now)
            .is_some_and(|phi| phi < self.config.phi_threshold)
    }

    /// Every peer alive at `now` (in no particular order).
    pub fn live_peers(&self, now: Instant) -> Vec<P> {
        self.peers
            .iter()
            .filter(|(_, window)| window.phi(now, &self.config) < self.config.phi_threshold)
            .map(|(peer, _)| peer.clone())
            .collect()
    }

    /// Every peer heard from but dead at `now`.
    pub fn dead_peers(&self, now: Instant) -> Vec<P> {
        self.peers
            .iter()
            .filter(|(_, window)| window.phi(now, &self.config) >= self.config.phi_threshold)
            .map(|(peer, _)| peer.clone())
            .collect()
    }

    /// When `peer` was last heard from.
    pub fn last_heartbeat(&self, peer: &P) -> Option<Instant> {
        self.peers.get(peer).map(|window| window.last_heartbeat)
    }

    /// Forgets `peer` entirely (it left the cluster); it starts from the prior if it returns.
    pub fn forget(&mut self, peer: &P) {
        self.peers.remove(peer);
    }

    /// Forgets every peer silent for longer than `silence` at `now`, so that the table does
    /// not grow with peers that left long ago.
    pub fn forget_silent(&mut self, now: Instant, silence: Duration) {
        self.peers
            .retain(|_, window| now.saturating_duration_since(window.last_heartbeat) <= silence);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn detector() -> FailureDetector<&'static str> {
        FailureDetector::new(FailureDetectorConfig::default())
    }

    /// Feeds `count` heartbeats `every` apart starting at `start`; returns the last arrival.
    fn beat(
        fd: &mut FailureDetector<&'static str>,
        peer: &'static str,
        start: Instant,
        every: Duration,
        count: u32,
    ) -> Instant {
        let mut at = start;
        for i in 0..count {
            at = start + every * i;
            fd.report_heartbeat(&peer, at);
        }
        at
    }

    #[test]
    fn unknown_peer_is_neither_alive_nor_scored() {
        let fd = detector();
        let now = Instant::now();
        assert_eq!(fd.phi(&"ghost", now), None);
        assert!(!fd.is_alive(&"ghost", now));
        assert!(fd.live_peers(now).is_empty());
    }

    #[test]
    fn regular_heartbeats_keep_a_peer_alive_and_silence_kills_it() {
        let mut fd = detector();
        let t0 = Instant::now();
        let last = beat(&mut fd, "a", t0, ms(500), 40);
        assert!(fd.is_alive(&"a", last + ms(500)));
        assert!(
            fd.is_alive(&"a", last + ms(3000)),
            "a few missed beats are tolerated"
        );
        // phi = t / (0.5 s * ln 10) reaches 8 at about 9.2 s of silence.
        assert!(!fd.is_alive(&"a", last + ms(9500)));
        assert_eq!(fd.dead_peers(last + ms(9500)), vec!["a"]);
    }

    #[test]
    fn phi_grows_with_silence() {
        let mut fd = detector();
        let t0 = Instant::now();
        let last = beat(&mut fd, "a", t0, ms(250), 20);
        let phis: Vec<f64> = [0, 250, 1000, 4000]
            .iter()
            .map(|&silence| fd.phi(&"a", last + ms(silence)).unwrap_or(f64::NAN))
            .collect();
        assert!(
            phis.windows(2).all(|w| w[0] < w[1]),
            "phi not increasing: {phis:?}"
        );
        assert_eq!(phis[0], 0.0);
    }

    #[test]
    fn faster_heartbeats_mean_faster_suspicion() {
        let mut fd = detector();
        let t0 = Instant::now();
        let fast_last = beat(&mut fd, "fast", t0, ms(100), 200);
        let slow_last = beat(&mut fd, "slow", t0, ms(1000), 200);
        let silence = ms(3000);
        let fast = fd.phi(&"fast", fast_last + silence).unwrap_or(0.0);
        let slow = fd
            .phi(&"slow", slow_last + silence)
            .unwrap_or(f64::INFINITY);
        assert!(
            fast > slow,
            "fast {fast} should be more suspicious than slow {slow}"
        );
        assert!(!fd.is_alive(&"fast", fast_last + silence));
        assert!(fd.is_alive(&"slow", slow_last + silence));
    }

    #[test]
    fn a_single_heartbeat_uses_the_bootstrap_interval() {
        let mut fd = detector();
        let t0 = Instant::now();
        fd.report_heartbeat(&"new", t0);
        // Only the prior (500 ms) is known: alive for a few seconds, dead after ~9.2 s.
        assert!(fd.is_alive(&"new", t0 + ms(2000)));
        assert!(!fd.is_alive(&"new", t0 + ms(10_000)));
    }

    #[test]
    fn a_burst_of_early_heartbeats_does_not_make_the_detector_trigger_happy() {
        let mut fd = detector();
        let t0 = Instant::now();
        // Three heartbeats 1 ms apart (e.g. queued gossip delivered at once).
        let last = beat(&mut fd, "a", t0, ms(1), 3);
        // Without the prior the mean would be 1 ms and 100 ms of silence would be fatal.
        assert!(fd.is_alive(&"a", last + ms(1000)));
    }

    #[test]
    fn a_long_absence_is_not_learned_as_normal() {
        let mut fd = detector();
        let t0 = Instant::now();
        let last = beat(&mut fd, "a", t0, ms(500), 20);
        // Gone for a minute, then back.
        let back = last + Duration::from_secs(60);
        fd.report_heartbeat(&"a", back);
        assert!(fd.is_alive(&"a", back + ms(1000)));
        assert!(
            !fd.is_alive(&"a", back + ms(10_000)),
            "the 60 s gap must not inflate the mean"
        );
    }

    #[test]
    fn out_of_order_heartbeats_are_ignored() {
        let mut fd = detector();
        let t0 = Instant::now();
        let last = beat(&mut fd, "a", t0, ms(500), 10);
        fd.report_heartbeat(&"a", last - ms(200));
        assert_eq!(fd.last_heartbeat(&"a"), Some(last));
    }

    #[test]
    fn live_peers_lists_only_the_living_and_forget_silent_prunes() {
        let mut fd = detector();
        let t0 = Instant::now();
        beat(&mut fd, "gone", t0, ms(500), 5);
        let now = t0 + Duration::from_secs(30);
        let last = beat(&mut fd, "here", now - ms(5000), ms(500), 10);
        let mut live = fd.live_peers(last + ms(100));
        live.sort();
        assert_eq!(live, vec!["here"]);
        fd.forget_silent(last, Duration::from_secs(20));
        assert_eq!(fd.phi(&"gone", last), None);
        assert!(fd.phi(&"here", last).is_some());
    }

    #[test]
    fn the_threshold_is_configurable() {
        let strict = FailureDetectorConfig {
            phi_threshold: 1.0,
            ..FailureDetectorConfig::default()
        };
        let mut fd = FailureDetector::new(strict);
        let t0 = Instant::now();
        let last = beat(&mut fd, "a", t0, ms(500), 20);
        // phi = 1 at 0.5 s * ln 10 = 1.15 s.
        assert!(fd.is_alive(&"a", last + ms(1000)));
        assert!(!fd.is_alive(&"a", last + ms(1300)));
    }
}
