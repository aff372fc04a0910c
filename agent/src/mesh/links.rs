//! Which connections an agent keeps. A libp2p connection never idles out here: gossipsub
//! holds a stream open on every connection to a peer that speaks it, so every link an
//! agent ever made (a Kademlia query dials up to 20 peers) would stay open for good, and
//! an agent of an N-agent mesh would end up linked to nearly all N - 1 others, paying
//! pings, gossip control traffic and scoring for each. Instead, once the daemon bounds
//! the links (an agent that does not vote), the swarm keeps:
//!
//! - the peers the daemon names (the voters and the leader: Raft and heartbeats), dialled
//!   when not connected;
//! - up to [`MESH_KEPT`] of its gossipsub mesh peers (gossipsub's target mesh degree:
//!   it grafts up to 12 while links last; a link closed under it is dropped from the
//!   mesh without a PRUNE, so no backoff and no penalty follow);
//! - peers it exchanged a request with in the last [`RECENTLY_USED`] (logs, checkpoint
//!   copies, forwarded proposals);
//! - and up to `max_discovery_links` others in all, the most recently used first;
//!
//! and closes the rest every [`TRIM_EVERY`]. This is go-libp2p's connection manager
//! (low water mark, protected peers) reduced to what the agent needs. A voter keeps
//! every link: it hears every agent's heartbeat, and the leader replicates to all.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use libp2p::{Multiaddr, PeerId};

use super::swarm_loop::SwarmLoop;

/// How often a bounded agent closes the links it does not need.
pub(super) const TRIM_EVERY: Duration = Duration::from_secs(10);

/// Gossip mesh peers kept (beyond the kept peers): gossipsub's target degree `mesh_n`.
pub(super) const MESH_KEPT: usize = 6;

/// A link that carried a request this recently is kept.
pub(super) const RECENTLY_USED: Duration = Duration::from_secs(30);

/// The links the daemon wants kept (see [`super::MeshHandle::bound_links`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkPolicy {
    /// Peers always linked (dialled when not connected), with addresses to reach them.
    pub keep: Vec<(PeerId, Vec<Multiaddr>)>,
}

/// Link bookkeeping of the swarm task.
#[derive(Debug, Default)]
pub(super) struct Links {
    /// `None`: keep every link (voters, agents outside a cluster).
    pub(super) bounded: Option<HashSet<PeerId>>,
    /// When each peer last exchanged a request with this agent.
    pub(super) last_used: HashMap<PeerId, Instant>,
}

impl Links {
    pub(super) fn used(&mut self, peer: PeerId) {
        self.last_used.insert(peer, Instant::now());
    }
}

/// Which of the `connected` peers to close: those neither kept, nor mesh peers, nor used
/// within [`RECENTLY_USED`], beyond the `spare_room` most recently used of them (after the
/// others are counted). Pure, for the tests.
pub(super) fn surplus(
    connected: &[PeerId],
    keep: &HashSet<PeerId>,
    mesh: &HashSet<PeerId>,
    last_used: &HashMap<PeerId, Instant>,
    max_links: usize,
    now: Instant,
) -> Vec<PeerId> {
    let recent = |peer: &PeerId| last_used.get(peer).is_some_and(|at| now.duration_since(*at) < RECENTLY_USED);
    let mut spare: Vec<PeerId> =
        connected.iter().filter(|p| !keep.contains(p) && !mesh.contains(p) && !recent(p)).copied().collect();
    let needed = connected.len() - spare.len();
    let room = max_links.saturating_sub(needed);
    // Most recently used first; never used last.
    spare.sort_by_key(|peer| std::cmp::Reverse(last_used.get(peer).copied()));
    spare.split_off(room.min(spare.len()))
}

impl SwarmLoop {
    /// Applies a new policy: `None` keeps every link.
    pub(super) fn set_link_policy(&mut self, policy: Option<LinkPolicy>) {
        let Some(policy) = policy else {
            if self.links.bounded.take().is_some() {
                tracing::info!("links: keeping every link (this agent votes, or belongs to no cluster)");
            }
            return;
        };
        let mut keep = HashSet::new();
        for (peer, addrs) in policy.keep {
            if peer == *self.swarm.local_peer_id() {
                continue;
            }
            for addr in addrs {
                self.add_peer_address(peer, addr);
            }
            keep.insert(peer);
        }
        if self.links.bounded.as_ref() != Some(&keep) {
            tracing::info!(kept = keep.len(), "links: bounded to the voters and the leader, {MESH_KEPT} gossip mesh peers and recent ones");
        }
        self.links.bounded = Some(keep);
        self.tend_links();
    }

    /// Dials the kept peers that are not connected and closes the links not needed.
    pub(super) fn tend_links(&mut self) {
        let Some(keep) = self.links.bounded.clone() else { return };
        for peer in &keep {
            if !self.swarm.is_connected(peer) {
                self.dial_peer(*peer);
            }
        }
        let connected: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        let mesh: HashSet<PeerId> =
            self.swarm.behaviour().gossipsub.all_mesh_peers().filter(|p| !keep.contains(p)).take(MESH_KEPT).copied().collect();
        let now = Instant::now();
        self.links.last_used.retain(|_, at| now.duration_since(*at) < RECENTLY_USED);
        for peer in surplus(&connected, &keep, &mesh, &self.links.last_used, self.max_discovery_links, now) {
            tracing::debug!(%peer, "closing a link this agent does not need");
            let _ = self.swarm.disconnect_peer_id(peer);
        }
    }

    /// Whether this agent still looks for peers through every new one (Kademlia
    /// bootstrap): while it keeps every link; a bounded agent already has what it needs.
    pub(super) fn explores(&self) -> bool {
        self.links.bounded.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peers(n: usize) -> Vec<PeerId> {
        (0..n).map(|_| PeerId::random()).collect()
    }

    #[test]
    fn kept_mesh_and_recently_used_links_stay_and_spare_room_goes_to_the_most_recent() {
        let now = Instant::now();
        let all = peers(10);
        let keep: HashSet<PeerId> = all[0..2].iter().copied().collect();
        let mesh: HashSet<PeerId> = all[2..4].iter().copied().collect();
        let mut used = HashMap::new();
        used.insert(all[4], now - Duration::from_secs(1));
        // Used long ago, newest of the spare ones first.
        used.insert(all[5], now - Duration::from_secs(40));
        used.insert(all[6], now - Duration::from_secs(50));
        // 5 needed (2 kept, 2 mesh, 1 recent), room for 2 more of the 5 spare.
        let closed = surplus(&all, &keep, &mesh, &used, 7, now);
        let closed: HashSet<PeerId> = closed.into_iter().collect();
        assert_eq!(closed.len(), 3);
        assert!(!closed.contains(&all[5]) && !closed.contains(&all[6]), "the most recently used spare links stay");
        assert!(all[7..].iter().all(|p| closed.contains(p)));
    }

    #[test]
    fn nothing_closes_while_the_needed_links_alone_exceed_the_bound() {
        let now = Instant::now();
        let all = peers(6);
        let keep: HashSet<PeerId> = all.iter().copied().collect();
        assert!(surplus(&all, &keep, &HashSet::new(), &HashMap::new(), 2, now).is_empty());
        let spare = surplus(&all, &HashSet::new(), &HashSet::new(), &HashMap::new(), 8, now);
        assert!(spare.is_empty(), "under the bound nothing closes");
    }
}
