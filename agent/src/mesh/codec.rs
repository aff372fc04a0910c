//! Request-response envelopes and their wire codec (protocol [`RPC_PROTOCOL`]).
//!
//! The mesh carries opaque bodies so that it does not depend on the Raft types: the
//! consensus layer encodes its own messages into [`MeshRequest::body`] and names the
//! [`Channel`] they belong to.
//!
//! Frame: a 4-byte big-endian length, then that many bytes of bincode (standard config).
//! A peer is never trusted with the length: one above [`MAX_RPC_BYTES`] fails the stream
//! before anything is read, and the body buffer grows only as bytes actually arrive, so
//! a forged "4 GiB follow" costs nothing.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use serde::{Deserialize, Serialize};

/// Protocol name of Saturn request-response: `/saturn/rpc/` and the wire version
/// ([`saturn_consensus::WIRE_VERSION`]), so that an agent of another version is never sent a
/// Raft entry it cannot decode (the stream is refused when it opens).
pub const RPC_PROTOCOL: StreamProtocol = StreamProtocol::new(concat!("/saturn/rpc/", saturn_consensus::wire_version!()));

/// Largest request or response frame: room for Raft AppendEntries batches and snapshots.
pub const MAX_RPC_BYTES: usize = 64 * 1024 * 1024;

/// Largest initial buffer reserved before the bytes are seen.
const INITIAL_READ_BUFFER: usize = 64 * 1024;

/// Which subsystem a request is for; the daemon routes on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "WireChannel", try_from = "WireChannel")]
pub enum Channel {
    /// Raft RPCs (append entries, vote, snapshot) of the consensus layer.
    Raft,
    /// Fetching job log output from the agent that ran the job.
    Logs,
    /// Checkpoint copies pulled between agents (manifests and chunks).
    Checkpoint,
}

/// [`Channel`] as the wire numbers it: bincode encodes a variant by its index, and index
/// 2 was a control channel that no agent ever served, so `Checkpoint` stays 3.
#[derive(Clone, Copy, Serialize, Deserialize)]
enum WireChannel {
    Raft,
    Logs,
    RetiredControl,
    Checkpoint,
}

impl From<Channel> for WireChannel {
    fn from(channel: Channel) -> Self {
        match channel {
            Channel::Raft => WireChannel::Raft,
            Channel::Logs => WireChannel::Logs,
            Channel::Checkpoint => WireChannel::Checkpoint,
        }
    }
}

impl TryFrom<WireChannel> for Channel {
    type Error = &'static str;

    fn try_from(wire: WireChannel) -> Result<Self, Self::Error> {
        match wire {
            WireChannel::Raft => Ok(Channel::Raft),
            WireChannel::Logs => Ok(Channel::Logs),
            WireChannel::Checkpoint => Ok(Channel::Checkpoint),
            WireChannel::RetiredControl => Err("channel 2 (control) is not served"),
        }
    }
}

/// A request to a peer: an opaque body for one channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeshRequest {
    /// Subsystem the body is for.
    pub channel: Channel,
    /// Encoded by the subsystem; the mesh never looks inside.
    #[serde(with = "body_bytes")]
    pub body: Vec<u8>,
}

/// A request as read off the wire: the codec does not fail a stream on a malformed frame,
/// it hands it to the swarm loop as `Malformed`, because only there is the sending peer
/// known and can be cut off (libp2p reports codec read errors to nobody).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireRequest {
    /// A well-formed request.
    Valid(MeshRequest),
    /// An oversized or undecodable frame, and why.
    Malformed(String),
}

/// The answer to a [`MeshRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MeshResponse {
    /// The subsystem's encoded answer.
    Ok(#[serde(with = "body_bytes")] Vec<u8>),
    /// The remote could not answer (unknown channel, handler dropped the request, ...).
    Err(String),
}

fn wire_config() -> bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<MAX_RPC_BYTES>,
> {
    bincode::config::standard().with_limit::<MAX_RPC_BYTES>()
}

/// Encodes a message into its frame body, refusing anything over the limit.
pub fn encode<T: Serialize>(message: &T) -> io::Result<Vec<u8>> {
    let bytes = bincode::serde::encode_to_vec(message, wire_config())
        .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err.to_string()))?;
    if bytes.len() > MAX_RPC_BYTES {
        return Err(too_large(bytes.len()));
    }
    Ok(bytes)
}

/// Decodes a frame body; trailing bytes are an error (a frame holds exactly one message).
pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> io::Result<T> {
    let (message, read) = bincode::serde::decode_from_slice::<T, _>(bytes, wire_config())
        .map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err.to_string()))?;
    if read != bytes.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} trailing bytes after the message", bytes.len() - read),
        ));
    }
    Ok(message)
}

fn too_large(size: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("frame of {size} bytes exceeds the limit of {MAX_RPC_BYTES} bytes"),
    )
}

/// Reads one frame, never allocating more than the bytes that arrived (and the limit).
pub async fn read_frame<R: AsyncRead + Unpin>(io: &mut R) -> io::Result<Vec<u8>> {
    let mut prefix = [0u8; 4];
    io.read_exact(&mut prefix).await?;
    let len = u32::from_be_bytes(prefix) as usize;
    if len > MAX_RPC_BYTES {
        return Err(too_large(len));
    }
    let mut buf = Vec::with_capacity(len.min(INITIAL_READ_BUFFER));
    io.take(len as u64).read_to_end(&mut buf).await?;
    if buf.len() != len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "frame announced {len} bytes, stream ended after {}",
                buf.len()
            ),
        ));
    }
    Ok(buf)
}

/// Writes one frame.
pub async fn write_frame<W: AsyncWrite + Unpin>(io: &mut W, bytes: &[u8]) -> io::Result<()> {
    let len = u32::try_from(bytes.len()).map_err(|_| too_large(bytes.len()))?;
    if bytes.len() > MAX_RPC_BYTES {
        return Err(too_large(bytes.len()));
    }
    io.write_all(&len.to_be_bytes()).await?;
    io.write_all(bytes).await?;
    io.flush().await
}

/// The request-response codec of the mesh.
#[derive(Debug, Clone, Default)]
pub struct MeshCodec;

impl libp2p::request_response::Codec for MeshCodec {
    type Protocol = StreamProtocol;
    type Request = WireRequest;
    type Response = MeshResponse;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<WireRequest>
    where
        T: AsyncRead + Unpin + Send,
    {
        let decoded = match read_frame(io).await {
            Ok(bytes) => decode(&bytes),
            Err(err) => Err(err),
        };
        match decoded {
            Ok(request) => Ok(WireRequest::Valid(request)),
            Err(err) if err.kind() == io::ErrorKind::InvalidData => {
                Ok(WireRequest::Malformed(err.to_string()))
            }
            // Truncation, resets: the stream broke, which says nothing about the peer.
            Err(err) => Err(err),
        }
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<MeshResponse>
    where
        T: AsyncRead + Unpin + Send,
    {
        decode(&read_frame(io).await?)
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: WireRequest,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        match req {
            WireRequest::Valid(request) => write_frame(io, &encode(&request)?).await,
            WireRequest::Malformed(reason) => {
                Err(io::Error::new(io::ErrorKind::InvalidInput, reason))
            }
        }
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: MeshResponse,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &encode(&res)?).await
    }
}

/// Serde adapter writing a `Vec<u8>` as one byte string instead of a sequence of
/// integers: same bytes on the wire for bincode, but decoded with one copy instead of a
/// visitor call per byte (it matters for 64 MiB snapshots).
mod body_bytes {
    use serde::de::{Deserializer, Error, SeqAccess, Visitor};
    use serde::Serializer;

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(bytes)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        deserializer.deserialize_byte_buf(BytesVisitor)
    }

    struct BytesVisitor;

    impl<'de> Visitor<'de> for BytesVisitor {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a byte string")
        }

        fn visit_bytes<E: Error>(self, bytes: &[u8]) -> Result<Vec<u8>, E> {
            Ok(bytes.to_vec())
        }

        fn visit_byte_buf<E: Error>(self, bytes: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(bytes)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            // Never trust a size hint from the wire for the allocation.
            let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
            while let Some(byte) = seq.next_element()? {
                bytes.push(byte);
            }
            Ok(bytes)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::io::Cursor;

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        futures::executor::block_on(future)
    }

    #[test]
    fn request_and_response_round_trip_through_frames() {
        let request = MeshRequest {
            channel: Channel::Raft,
            body: (0..=255u8).cycle().take(100_000).collect(),
        };
        let mut wire = Vec::new();
        block_on(write_frame(&mut wire, &encode(&request).expect("encodes"))).expect("writes");
        let back: MeshRequest =
            decode(&block_on(read_frame(&mut Cursor::new(wire))).expect("reads")).expect("decodes");
        assert_eq!(back, request);

        for response in [
            MeshResponse::Ok(vec![1, 2, 3]),
            MeshResponse::Err("no".into()),
        ] {
            let bytes = encode(&response).expect("encodes");
            assert_eq!(decode::<MeshResponse>(&bytes).expect("decodes"), response);
        }
    }

    #[test]
    fn a_length_prefix_over_the_limit_is_refused_before_reading() {
        let mut wire = u32::MAX.to_be_bytes().to_vec();
        wire.extend_from_slice(b"whatever");
        let err = block_on(read_frame(&mut Cursor::new(wire))).expect_err("must refuse");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn a_lying_length_prefix_under_the_limit_fails_at_end_of_stream() {
        let mut wire = ((MAX_RPC_BYTES - 1) as u32).to_be_bytes().to_vec();
        wire.extend_from_slice(&[7u8; 100]);
        let err = block_on(read_frame(&mut Cursor::new(wire))).expect_err("must fail");
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn garbage_inside_a_valid_frame_is_invalid_data() {
        // Channel 0, then a body claiming 2^40 bytes.
        let garbage = [0u8, 253, 0, 0, 0, 0, 0, 1, 0, 0];
        let err = decode::<MeshRequest>(&garbage).expect_err("must fail");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let err = decode::<MeshRequest>(&[9, 0]).expect_err("unknown channel");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn the_codec_hands_malformed_frames_over_instead_of_failing_the_stream() {
        use libp2p::request_response::Codec;
        let read =
            |wire: Vec<u8>| block_on(MeshCodec.read_request(&RPC_PROTOCOL, &mut Cursor::new(wire)));
        let oversized = u32::MAX.to_be_bytes().to_vec();
        assert!(matches!(read(oversized), Ok(WireRequest::Malformed(_))));
        assert!(matches!(
            read(vec![0, 0, 0, 2, 9, 0]),
            Ok(WireRequest::Malformed(_))
        ));
        // A stream that breaks off is an I/O error, not evidence against the peer.
        assert!(read(vec![0, 0, 0, 20, 1]).is_err());
        let mut valid = Vec::new();
        let request = MeshRequest {
            channel: Channel::Logs,
            body: b"hi".to_vec(),
        };
        block_on(write_frame(&mut valid, &encode(&request).expect("encodes"))).expect("writes");
        assert_eq!(read(valid).expect("reads"), WireRequest::Valid(request));
    }

    #[test]
    fn oversized_messages_are_not_sent() {
        let request = MeshRequest {
            channel: Channel::Raft,
            body: vec![0; MAX_RPC_BYTES + 1],
        };
        assert!(encode(&request).is_err());
    }
}
