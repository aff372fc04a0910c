//! A libp2p peer that speaks the mesh's request-response protocol with raw bytes, to play
//! an authenticated but broken or hostile agent.

use std::io;
use std::time::Duration;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{identity::Keypair, Multiaddr, PeerId, StreamProtocol, Swarm, SwarmBuilder};
use saturn_agent::mesh::codec::RPC_PROTOCOL;
use saturn_agent::mesh::transport::build_transport;

/// Writes requests verbatim (no frame) and reads whatever comes back.
#[derive(Debug, Clone, Default)]
pub struct RawCodec;

impl request_response::Codec for RawCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>> {
        let mut buf = Vec::new();
        io.take(1024).read_to_end(&mut buf).await?;
        Ok(buf)
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>> {
        let mut buf = Vec::new();
        io.take(1024).read_to_end(&mut buf).await?;
        if buf.is_empty() {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "no answer"));
        }
        Ok(buf)
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> io::Result<()> {
        io.write_all(&req).await?;
        io.close().await
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Vec<u8>,
    ) -> io::Result<()> {
        io.write_all(&res).await?;
        io.close().await
    }
}

/// A swarm of `behaviour` over the mesh's transport without the cluster key.
pub fn swarm<B: NetworkBehaviour>(keypair: Keypair, behaviour: B) -> Swarm<B> {
    let transport = build_transport(&keypair, None).expect("transport");
    SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_other_transport(|_| transport)
        .expect("transport")
        .with_behaviour(|_| behaviour)
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build()
}

/// The hostile peer.
pub struct RawPeer {
    swarm: Swarm<request_response::Behaviour<RawCodec>>,
}

impl RawPeer {
    pub fn new() -> Self {
        let keypair = Keypair::generate_ed25519();
        let behaviour = request_response::Behaviour::<RawCodec>::new(
            [(RPC_PROTOCOL, ProtocolSupport::Outbound)],
            request_response::Config::default().with_request_timeout(Duration::from_secs(5)),
        );
        Self { swarm: swarm(keypair, behaviour) }
    }

    /// Sends `bytes` on the request-response protocol to `peer` at `addr` and returns
    /// whether any answer came back before the stream failed.
    pub async fn send_raw(&mut self, peer: PeerId, addr: Multiaddr, bytes: Vec<u8>) -> bool {
        self.swarm.add_peer_address(peer, addr);
        let id = self.swarm.behaviour_mut().send_request(&peer, bytes);
        let outcome = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match self.swarm.select_next_some().await {
                    SwarmEvent::Behaviour(request_response::Event::Message {
                        message: request_response::Message::Response { request_id, .. },
                        ..
                    }) if request_id == id => return true,
                    SwarmEvent::Behaviour(request_response::Event::OutboundFailure {
                        request_id,
                        ..
                    }) if request_id == id => return false,
                    _ => {}
                }
            }
        })
        .await;
        outcome.expect("the raw request neither failed nor succeeded in time")
    }
}
