//! An in-process [`Transport`] for tests and benchmarks: a simulated network in which no
//! byte leaves the process, with faults on demand.
//!
//! Every request and response is encoded and decoded with [`codec`](crate::codec) on the
//! way, exactly as a real transport would, so a type that does not survive bincode fails
//! here first (see [`MemRouter::codec_failures`]). Links can be cut in one or both
//! directions, members isolated, and messages dropped with a probability drawn from a
//! seeded generator, so fault tests are reproducible.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::codec::{decode, encode};
use crate::node::{AgentNode, NodeId};
use crate::rpc::{Envelope, RaftResponse};
use crate::server::RaftServer;
use crate::transport::{Transport, TransportError};

/// The simulated network. Cheap to clone; clones share it.
#[derive(Clone)]
pub struct MemRouter {
    inner: Arc<Mutex<Links>>,
}

struct Links {
    servers: BTreeMap<NodeId, RaftServer>,
    /// Directed links that deliver nothing: `(from, to)`.
    cut: BTreeSet<(NodeId, NodeId)>,
    /// Members cut from everyone, both ways.
    isolated: BTreeSet<NodeId>,
    /// Members that never answer nor send (a hung host: its connections stay open).
    frozen: BTreeSet<NodeId>,
    drop_probability: f64,
    rng: ChaCha8Rng,
    codec_failures: u64,
}

impl Links {
    fn delivers(&mut self, from: NodeId, to: NodeId) -> Result<(), TransportError> {
        if self.cut.contains(&(from, to)) || self.isolated.contains(&from) || self.isolated.contains(&to) {
            return Err(TransportError::Unreachable(format!("node {to} (link from {from} is cut)")));
        }
        if self.drop_probability > 0.0 && self.rng.gen_bool(self.drop_probability) {
            return Err(TransportError::Failed(format!("message {from} -> {to} dropped")));
        }
        Ok(())
    }
}

impl MemRouter {
    /// A network with all links up, no drops, and `seed` for the drop generator.
    pub fn new(seed: u64) -> Self {
        let links = Links {
            servers: BTreeMap::new(),
            cut: BTreeSet::new(),
            isolated: BTreeSet::new(),
            frozen: BTreeSet::new(),
            drop_probability: 0.0,
            rng: ChaCha8Rng::seed_from_u64(seed),
            codec_failures: 0,
        };
        MemRouter { inner: Arc::new(Mutex::new(links)) }
    }

    fn links(&self) -> MutexGuard<'_, Links> {
        // Only plain data behind this lock; a panic elsewhere cannot leave it inconsistent.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The transport member `from` sends with.
    pub fn transport(&self, from: NodeId) -> Arc<dyn Transport> {
        Arc::new(MemTransport { from, router: self.clone() })
    }

    /// Routes requests addressed to `id` to `server`.
    pub fn serve(&self, id: NodeId, server: RaftServer) {
        self.links().servers.insert(id, server);
    }

    /// `id` is gone (crashed): requests to it are unreachable.
    pub fn remove(&self, id: NodeId) {
        self.links().servers.remove(&id);
    }

    /// Cuts the link between `a` and `b` in both directions.
    pub fn cut(&self, a: NodeId, b: NodeId) {
        let mut links = self.links();
        links.cut.insert((a, b));
        links.cut.insert((b, a));
    }

    /// Cuts only `from` → `to`: `to` still reaches `from`, but gets nothing back.
    pub fn cut_one_way(&self, from: NodeId, to: NodeId) {
        self.links().cut.insert((from, to));
    }

    /// Restores the link between `a` and `b`, both directions.
    pub fn heal(&self, a: NodeId, b: NodeId) {
        let mut links = self.links();
        links.cut.remove(&(a, b));
        links.cut.remove(&(b, a));
    }

    /// Cuts `id` off from every other member, both ways.
    pub fn isolate(&self, id: NodeId) {
        self.links().isolated.insert(id);
    }

    /// Freezes `id` like a hung host: requests to it and from it neither arrive nor fail,
    /// they wait forever (the callers' own timeouts apply). Unlike a cut link, nothing
    /// tells a caller that the member is gone. Requests already waiting stay lost.
    pub fn freeze(&self, id: NodeId) {
        self.links().frozen.insert(id);
    }

    /// Restores every link, thaws frozen members and stops dropping messages.
    pub fn heal_all(&self) {
        let mut links = self.links();
        links.cut.clear();
        links.isolated.clear();
        links.frozen.clear();
        links.drop_probability = 0.0;
    }

    /// Drops each request and each response with probability `p` (0 to 1).
    pub fn set_drop_probability(&self, p: f64) {
        self.links().drop_probability = p.clamp(0.0, 1.0);
    }

    /// Messages that failed to encode or decode so far: any is a bug.
    pub fn codec_failures(&self) -> u64 {
        self.links().codec_failures
    }

    fn codec_failure(&self, what: String) -> TransportError {
        self.links().codec_failures += 1;
        tracing::error!("{what}");
        TransportError::Failed(what)
    }
}

/// One member's view of the [`MemRouter`].
struct MemTransport {
    from: NodeId,
    router: MemRouter,
}

#[async_trait::async_trait]
impl Transport for MemTransport {
    async fn call(&self, target: NodeId, _node: &AgentNode, request: Envelope) -> Result<RaftResponse, TransportError> {
        let frozen = {
            let links = self.router.links();
            links.frozen.contains(&self.from) || links.frozen.contains(&target)
        };
        if frozen {
            return std::future::pending().await;
        }
        let server = {
            let mut links = self.router.links();
            links.delivers(self.from, target)?;
            links.servers.get(&target).cloned()
        };
        let server = server.ok_or_else(|| TransportError::Unreachable(format!("node {target} is down")))?;
        let request = encode("request", &request)
            .and_then(|bytes| decode::<Envelope>("request", &bytes))
            .map_err(|e| self.router.codec_failure(e.to_string()))?;

        let response = server.handle(self.from, request).await;

        self.router.links().delivers(target, self.from).map_err(|_| {
            TransportError::Failed(format!("response {target} -> {} lost", self.from))
        })?;
        encode("response", &response)
            .and_then(|bytes| decode::<RaftResponse>("response", &bytes))
            .map_err(|e| self.router.codec_failure(e.to_string()))
    }
}
