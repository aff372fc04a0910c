//! Soft state from gossip: the latest heartbeat of every agent and a phi-accrual failure
//! detector over their arrival times. Fine to lose: it is rebuilt from the next
//! heartbeats after a restart.
//!
//! This is a `std::sync::Mutex`, not a tokio one, because nothing asynchronous happens
//! while it is held: callers copy what they need out.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use saturn_consensus::{AgentNode, GpuInfo};

use crate::api::SoftView;
use crate::health::{FailureDetector, FailureDetectorConfig};
use crate::mesh::Heartbeat;
use crate::scheduler::context::AgentHealth;

/// What one agent last said about itself, and when we heard it.
#[derive(Clone, Debug)]
struct Heard {
    heartbeat: Heartbeat,
    at: Instant,
    at_ms: u64,
}

/// Heartbeats and health of every agent this one hears from.
pub struct SoftState {
    self_name: String,
    inner: Mutex<Inner>,
    /// Cleared when this agent can no longer take part (its consensus core stopped).
    self_healthy: std::sync::atomic::AtomicBool,
}

struct Inner {
    detector: FailureDetector<String>,
    heard: BTreeMap<String, Heard>,
    own: Option<Heartbeat>,
}

impl SoftState {
    /// Soft state of agent `self_name`, expecting heartbeats every `interval`.
    pub fn new(self_name: &str, interval: Duration) -> Self {
        let config = FailureDetectorConfig {
            bootstrap_interval: interval,
            max_interval: (interval * 20).max(Duration::from_secs(5)),
            ..FailureDetectorConfig::default()
        };
        Self {
            self_name: self_name.to_string(),
            inner: Mutex::new(Inner { detector: FailureDetector::new(config), heard: BTreeMap::new(), own: None }),
            self_healthy: std::sync::atomic::AtomicBool::new(true),
        }
    }

    /// Marks this agent unhealthy for good (its consensus core stopped): its status and
    /// its heartbeats say so until it exits.
    pub fn mark_self_unhealthy(&self) {
        self.self_healthy.store(false, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether this agent is healthy (see [`mark_self_unhealthy`](Self::mark_self_unhealthy)).
    pub fn self_healthy(&self) -> bool {
        self.self_healthy.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves plain data behind; keep using it.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records a heartbeat received by gossip (our own included).
    pub fn on_heartbeat(&self, heartbeat: Heartbeat, now: Instant, now_ms: u64) {
        let mut inner = self.lock();
        if heartbeat.name == self.self_name {
            inner.own = Some(heartbeat);
            return;
        }
        if let Some(previous) = inner.heard.get(&heartbeat.name) {
            // Gossip may deliver out of order; an older heartbeat says nothing new. `seq`
            // restarts with the agent, so the sender's clock orders heartbeats first.
            let older = (heartbeat.at_ms, heartbeat.seq) <= (previous.heartbeat.at_ms, previous.heartbeat.seq);
            if previous.heartbeat.peer_id == heartbeat.peer_id && older {
                return;
            }
        }
        inner.detector.report_heartbeat(&heartbeat.name, now);
        let name = heartbeat.name.clone();
        inner.heard.insert(name, Heard { heartbeat, at: now, at_ms: now_ms });
    }

    /// Forgets every agent not in `keep` (this one aside): an agent that stopped hearing
    /// everyone (a learner hears only the voters) must not report the others as dead
    /// because their heartbeats stopped reaching it.
    pub fn retain_only(&self, keep: &std::collections::BTreeSet<String>) {
        let mut inner = self.lock();
        let gone: Vec<String> = inner.heard.keys().filter(|name| !keep.contains(*name)).cloned().collect();
        for name in gone {
            inner.heard.remove(&name);
            inner.detector.forget(&name);
        }
    }

    /// Whether `name` is alive by the failure detector (this agent always is).
    pub fn is_alive(&self, name: &str, now: Instant) -> bool {
        if name == self.self_name {
            return self.self_healthy();
        }
        let inner = self.lock();
        inner.detector.is_alive(&name.to_string(), now) && inner.heard.get(name).is_some_and(|h| h.heartbeat.healthy)
    }

    /// Every agent heard from (and this one), alive or not, as the scheduler sees them.
    pub fn health(&self, now: Instant) -> BTreeMap<String, AgentHealth> {
        let inner = self.lock();
        let mut health = BTreeMap::new();
        for (name, heard) in &inner.heard {
            let entry = if inner.detector.is_alive(name, now) && heard.heartbeat.healthy {
                alive(&heard.heartbeat)
            } else {
                AgentHealth::Dead { since_ms: heard.at_ms }
            };
            health.insert(name.clone(), entry);
        }
        if let Some(own) = inner.own.as_ref().filter(|_| self.self_healthy()) {
            health.insert(self.self_name.clone(), alive(own));
        }
        health
    }

    /// The nodes of agents alive now (this one included), for membership and formation.
    pub fn alive_nodes(&self, now: Instant) -> Vec<AgentNode> {
        self.health(now)
            .into_values()
            .filter_map(|h| match h {
                AgentHealth::Alive { node, .. } => Some(node),
                AgentHealth::Dead { .. } => None,
            })
            .collect()
    }

    /// Alive agents that belong to no cluster yet and may form one (`--bootstrap-expect`),
    /// by what their last heartbeats say: the candidates for forming one. Agents given
    /// only `--join` are never founders. Empty as soon as any alive agent says it is a
    /// member: a cluster exists, and its leader will add this agent as a learner, so
    /// forming another would split the mesh.
    pub fn founders(&self, now: Instant) -> Vec<AgentNode> {
        let alive = self.alive_nodes(now);
        let said = |name: &str| {
            let inner = self.lock();
            let heartbeat = if name == self.self_name { inner.own.as_ref() } else { inner.heard.get(name).map(|h| &h.heartbeat) };
            heartbeat.map_or((false, false), |h| (h.member, h.forms))
        };
        if alive.iter().any(|n| said(&n.name).0) {
            return Vec::new();
        }
        alive.into_iter().filter(|n| said(&n.name).1).collect()
    }

    /// How long ago `name` was last heard from.
    pub fn silent_for(&self, name: &str, now: Instant) -> Option<Duration> {
        self.lock().heard.get(name).map(|h| now.saturating_duration_since(h.at))
    }

    /// The API's view: who is alive, and GPU utilisation.
    pub fn view(&self, now: Instant) -> SoftView {
        let inner = self.lock();
        let mut view = SoftView::default();
        let all = inner.heard.values().map(|h| &h.heartbeat).chain(inner.own.iter());
        for heartbeat in all {
            let alive = if heartbeat.name == self.self_name {
                self.self_healthy()
            } else {
                heartbeat.healthy && inner.detector.is_alive(&heartbeat.name, now)
            };
            view.alive.insert(heartbeat.name.clone(), alive);
            for gpu in &heartbeat.gpus {
                view.utilization.insert((heartbeat.name.clone(), gpu.index), f64::from(gpu.utilization_pct));
            }
        }
        view.alive.insert(self.self_name.clone(), self.self_healthy());
        view
    }
}

fn alive(heartbeat: &Heartbeat) -> AgentHealth {
    AgentHealth::Alive {
        node: AgentNode {
            name: heartbeat.name.clone(),
            peer_id: heartbeat.peer_id.clone(),
            addrs: heartbeat.addrs.clone(),
        },
        gpus: heartbeat
            .gpus
            .iter()
            .map(|g| GpuInfo { index: g.index, model: g.model.clone(), memory_mib: g.memory_mib })
            .collect(),
    }
}
