//! Fuzzing the mesh wire: what an authenticated (or, without a cluster key, any) peer can
//! put on a Saturn request-response stream or on the gossip topic.
//!
//! - `read_frame` on arbitrary byte streams returns a frame or an error, never panics,
//!   and grows its buffer only with the bytes that arrived; a forged 4 GiB length is
//!   refused at once, a forged length under the limit fails at end of stream.
//! - `codec::decode` of requests and responses, the request-response codec itself, and
//!   `Gossip::decode` refuse arbitrary and mutated bytes without panicking, and allocate
//!   at most their limits ([`MAX_RPC_BYTES`], [`MAX_GOSSIP_BYTES`]) at once.
//!
//! What the swarm does with a refused message (drop it, cut off or penalise the peer) is
//! tested end to end in `tests/mesh.rs`: garbage and a forged 4 GiB length on the mesh
//! port, an oversized frame, an unknown channel and a forged body length from an
//! authenticated peer (dropped, peer cut off, agent keeps serving), forged heartbeats
//! (rejected, not delivered). Raft and log bodies inside a valid frame are decoded by
//! `saturn_consensus::codec`, fuzzed in `consensus/tests/fuzz_codec.rs`.
//!
//! These are proptest suites rather than cargo-fuzz targets: cargo-fuzz needs a nightly
//! toolchain, which CI does not have. A few seconds by default; to search longer:
//! `PROPTEST_CASES=100000 cargo test --release -p saturn-agent --test fuzz_wire`.

// The allocation probe is shared with the consensus fuzz suite rather than copied.
#[path = "../../consensus/tests/alloc_probe/mod.rs"]
mod alloc_probe;
#[path = "../../consensus/tests/byte_mutation/mod.rs"]
mod byte_mutation;

use std::io;
use std::time::{Duration, Instant};

use alloc_probe::largest_allocation;
use byte_mutation::{mutate, mutation};
use futures::executor::block_on;
use futures::io::Cursor;
use libp2p::request_response::Codec;
use proptest::prelude::*;
use saturn_agent::mesh::codec::{
    decode, encode, read_frame, write_frame, Channel, MeshCodec, MeshRequest, MeshResponse, WireRequest,
    MAX_RPC_BYTES, RPC_PROTOCOL,
};
use saturn_agent::mesh::gossip::{GpuLoad, Gossip, Heartbeat, MAX_GOSSIP_BYTES};

#[global_allocator]
static PROBE: alloc_probe::Probe = alloc_probe::Probe;

/// What `read_frame` may reserve before bytes arrive (its initial buffer), plus slack.
const FRAME_READ_BOUND: usize = 128 * 1024;

/// serde pre-allocates a sequence from its claimed length up to 1 MiB, whatever the limit.
const SERDE_PREALLOCATION_CAP: usize = 1024 * 1024;

fn cases(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    // No regression files: proptest cannot place them for an integration test.
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut wire = Vec::new();
    block_on(write_frame(&mut wire, body)).expect("writing to a Vec cannot fail");
    wire
}

fn heartbeat() -> Gossip {
    Gossip::Heartbeat(Heartbeat {
        name: "node-a".into(),
        peer_id: "12D3KooWExample".into(),
        addrs: vec!["/ip4/10.0.0.1/tcp/7946".into()],
        seq: 9,
        at_ms: 1_700_000_000_000,
        gpus: vec![GpuLoad { index: 0, model: "A100-80GB".into(), memory_mib: 81920, utilization_pct: 50, busy: true }],
        member: true,
        forms: false,
        cluster: Some("0123456789abcdef0123456789abcdef".into()),
        healthy: true,
    })
}

/// Valid wire messages to mutate: a framed Raft request, a framed response, a heartbeat.
fn seeds() -> [Vec<u8>; 3] {
    let request = MeshRequest { channel: Channel::Raft, body: (0..200u8).collect() };
    let response = MeshResponse::Ok(b"applied".to_vec());
    [
        frame(&encode(&request).expect("encodes")),
        frame(&encode(&response).expect("encodes")),
        heartbeat().encode().expect("encodes"),
    ]
}

/// Feeds `wire` to every reader of the mesh, checking each allocation against its limit.
fn read_everything(wire: &[u8]) -> Result<(), TestCaseError> {
    let (_, largest) = largest_allocation(|| block_on(read_frame(&mut Cursor::new(wire))).is_ok());
    prop_assert!(largest <= FRAME_READ_BOUND.max(2 * wire.len()), "read_frame of {} bytes allocated {largest}", wire.len());

    let (request, largest) = largest_allocation(|| block_on(MeshCodec.read_request(&RPC_PROTOCOL, &mut Cursor::new(wire))));
    prop_assert!(largest <= MAX_RPC_BYTES, "read_request allocated {largest}");
    if let Ok(WireRequest::Malformed(why)) = &request {
        prop_assert!(!why.is_empty());
    }
    let (_, largest) = largest_allocation(|| block_on(MeshCodec.read_response(&RPC_PROTOCOL, &mut Cursor::new(wire))).is_ok());
    prop_assert!(largest <= MAX_RPC_BYTES, "read_response allocated {largest}");

    let (_, largest) = largest_allocation(|| decode::<MeshRequest>(wire).is_ok());
    prop_assert!(largest <= MAX_RPC_BYTES, "decode allocated {largest}");
    let (_, largest) = largest_allocation(|| Gossip::decode(wire).is_ok());
    let bound = MAX_GOSSIP_BYTES.max(SERDE_PREALLOCATION_CAP);
    prop_assert!(largest <= bound, "Gossip::decode allocated {largest}");
    Ok(())
}

proptest! {
    #![proptest_config(cases(512))]

    #[test]
    fn arbitrary_bytes_are_refused_without_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        read_everything(&bytes)?;
    }

    #[test]
    fn arbitrary_bytes_in_a_well_framed_stream_are_malformed_or_valid(body in proptest::collection::vec(any::<u8>(), 0..600)) {
        // A correct length around garbage: the codec must hand it over as Malformed (so the
        // swarm can blame the peer), never fail the stream or panic.
        let request = block_on(MeshCodec.read_request(&RPC_PROTOCOL, &mut Cursor::new(frame(&body))));
        prop_assert!(matches!(request, Ok(WireRequest::Valid(_) | WireRequest::Malformed(_))), "{:?}", request);
    }

    #[test]
    fn mutated_messages_are_refused_without_panics(seed in 0usize..3, edits in proptest::collection::vec(mutation(), 1..8)) {
        let wire = edits.into_iter().fold(seeds()[seed].clone(), mutate);
        read_everything(&wire)?;
    }
}

#[test]
fn a_forged_4_gib_length_is_refused_at_once_without_reading_or_allocating() {
    let mut wire = u32::MAX.to_be_bytes().to_vec();
    wire.extend_from_slice(&[0u8; 16]);
    let started = Instant::now();
    let (result, largest) = largest_allocation(|| block_on(read_frame(&mut Cursor::new(&wire))));
    let err = result.expect_err("a 4 GiB frame is over the limit");
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    assert!(largest < 1024, "allocated {largest} bytes for a refused frame");
    assert!(started.elapsed() < Duration::from_secs(1), "took {:?}", started.elapsed());
}

#[test]
fn a_forged_length_under_the_limit_costs_only_the_bytes_that_arrive() {
    let mut wire = ((MAX_RPC_BYTES - 1) as u32).to_be_bytes().to_vec();
    wire.extend_from_slice(&[7u8; 1000]);
    let started = Instant::now();
    let (result, largest) = largest_allocation(|| block_on(read_frame(&mut Cursor::new(&wire))));
    assert_eq!(result.expect_err("the stream ends early").kind(), io::ErrorKind::UnexpectedEof);
    assert!(largest <= FRAME_READ_BOUND, "allocated {largest} bytes for 1000 that arrived");
    assert!(started.elapsed() < Duration::from_secs(1), "took {:?}", started.elapsed());
}

#[test]
fn gossip_claiming_more_than_the_gossip_limit_is_refused() {
    // gossipsub drops messages over MAX_GOSSIP_BYTES before they are decoded; decoding
    // must refuse one that claims more anyway (an 80 KiB address list in a heartbeat).
    let Gossip::Heartbeat(mut huge) = heartbeat();
    huge.addrs = vec!["x".repeat(1024); 80];
    let bytes = bincode::serde::encode_to_vec(Gossip::Heartbeat(huge), bincode::config::standard()).expect("encodes");
    let (result, largest) = largest_allocation(|| Gossip::decode(&bytes));
    assert!(result.is_err(), "an 80 KiB heartbeat was accepted");
    assert!(largest <= MAX_GOSSIP_BYTES.max(SERDE_PREALLOCATION_CAP), "allocated {largest}");
}

#[test]
fn the_seeds_are_valid_unmutated() {
    let [request, response, gossip] = seeds();
    let read = |wire: &[u8]| block_on(read_frame(&mut Cursor::new(wire.to_vec()))).expect("a whole frame");
    assert!(matches!(decode::<MeshRequest>(&read(&request)), Ok(MeshRequest { channel: Channel::Raft, .. })));
    assert!(matches!(decode::<MeshResponse>(&read(&response)), Ok(MeshResponse::Ok(_))));
    assert_eq!(Gossip::decode(&gossip), Ok(heartbeat()));
}
