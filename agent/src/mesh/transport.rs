//! The mesh transport: TCP, optionally wrapped in a private network keyed by the cluster
//! key, then noise (authentication, encryption) and yamux (stream multiplexing).
//!
//! The private network sits *under* noise: without the key the peers' noise messages
//! decrypt to garbage, so a stranger fails the handshake before learning anything but
//! that a port is open.

use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::{Boxed, Transport};
use libp2p::core::upgrade::Version;
use libp2p::identity::Keypair;
use libp2p::pnet::{PnetConfig, PreSharedKey};
use libp2p::{noise, tcp, yamux, PeerId};

use super::MeshError;

/// Builds the authenticated, multiplexed TCP transport, with a private network if
/// `cluster_key` is given.
pub fn build_transport(
    keypair: &Keypair,
    cluster_key: Option<PreSharedKey>,
) -> Result<Boxed<(PeerId, StreamMuxerBox)>, MeshError> {
    let noise = noise::Config::new(keypair).map_err(|err| MeshError::Build(err.to_string()))?;
    let tcp = tcp::tokio::Transport::new(tcp::Config::default().nodelay(true));
    let transport = match cluster_key {
        Some(key) => tcp
            .and_then(move |socket, _| PnetConfig::new(key).handshake(socket))
            .upgrade(Version::V1Lazy)
            .authenticate(noise)
            .multiplex(yamux::Config::default())
            .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)))
            .boxed(),
        None => tcp
            .upgrade(Version::V1Lazy)
            .authenticate(noise)
            .multiplex(yamux::Config::default())
            .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)))
            .boxed(),
    };
    Ok(transport)
}
