//! A peer that identifies as a Saturn agent of wire version 1 (a build from before the
//! wire version was announced) and speaks that version's request-response protocol.

use std::time::Duration;

use futures::StreamExt;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{identify, identity::Keypair, Multiaddr, PeerId, StreamProtocol, Swarm};

use super::raw_peer::{swarm, RawCodec};

#[derive(NetworkBehaviour)]
pub struct OldBehaviour {
    identify: identify::Behaviour,
    rpc: request_response::Behaviour<RawCodec>,
}

/// What the old agent saw of its link to the agent under test.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The identify info the agent sent (it identified itself before hanging up).
    pub identified_as: Option<String>,
    /// Whether the agent closed the connection.
    pub closed: bool,
    /// Whether the request on the old protocol got an answer.
    pub answered: bool,
}

pub struct OldAgent {
    swarm: Swarm<OldBehaviour>,
}

impl OldAgent {
    pub fn new(name: &str) -> Self {
        let keypair = Keypair::generate_ed25519();
        let behaviour = OldBehaviour {
            identify: identify::Behaviour::new(
                identify::Config::new("/saturn/id/1".into(), keypair.public())
                    .with_agent_version(format!("saturn-agent/0.1.0 {name}")),
            ),
            rpc: request_response::Behaviour::new(
                [(StreamProtocol::new("/saturn/rpc/1"), ProtocolSupport::Full)],
                request_response::Config::default().with_request_timeout(Duration::from_secs(5)),
            ),
        };
        Self { swarm: swarm(keypair, behaviour) }
    }

    pub fn peer_id(&self) -> PeerId {
        *self.swarm.local_peer_id()
    }

    /// Connects to `peer` at `addr`, sends a version-1 request, and watches until the
    /// connection closes and the request has its outcome (at most 15 s).
    pub async fn visit(&mut self, peer: PeerId, addr: Multiaddr) -> Outcome {
        self.swarm.add_peer_address(peer, addr);
        let id = self.swarm.behaviour_mut().rpc.send_request(&peer, vec![0, 0, 0, 1, 0]);
        let mut outcome = Outcome::default();
        let mut settled = false;
        let watched = tokio::time::timeout(Duration::from_secs(15), async {
            while !(outcome.closed && settled) {
                match self.swarm.select_next_some().await {
                    SwarmEvent::Behaviour(OldBehaviourEvent::Identify(identify::Event::Received { info, .. })) => {
                        outcome.identified_as = Some(info.protocol_version);
                    }
                    SwarmEvent::Behaviour(OldBehaviourEvent::Rpc(request_response::Event::Message {
                        message: request_response::Message::Response { request_id, .. },
                        ..
                    })) if request_id == id => (outcome.answered, settled) = (true, true),
                    SwarmEvent::Behaviour(OldBehaviourEvent::Rpc(request_response::Event::OutboundFailure {
                        request_id,
                        ..
                    })) if request_id == id => settled = true,
                    SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } if peer_id == peer => {
                        outcome.closed = true
                    }
                    _ => {}
                }
            }
        })
        .await;
        assert!(watched.is_ok(), "the agent neither hung up nor settled the request in 15 s: {outcome:?}");
        outcome
    }
}
