//! Scenarios of the agent mesh: real swarms on loopback (mDNS off), driven through the
//! public handle, observed through the events a daemon would see.

mod mesh {
    pub mod old_agent;
    pub mod raw_peer;
    pub mod support;
}

use std::time::Duration;

use mesh::old_agent::OldAgent;
use mesh::raw_peer::RawPeer;
use mesh::support::{eventually, Agent, AgentSpec};
use saturn_agent::mesh::{
    self as agent_mesh, generate_cluster_key, Channel, Gossip, GpuLoad, Heartbeat, MeshError,
    MeshRequest, MeshResponse,
};
use tokio::io::AsyncWriteExt;

fn heartbeat(agent: &Agent, seq: u64) -> Gossip {
    Gossip::Heartbeat(Heartbeat {
        name: agent.name.clone(),
        peer_id: agent.peer_id().to_string(),
        addrs: Vec::new(),
        seq,
        at_ms: 0,
        gpus: vec![GpuLoad {
            index: 0,
            model: "SIM-24GB".into(),
            memory_mib: 24576,
            utilization_pct: 40,
            busy: false,
        }],
        member: false,
        forms: true,
        cluster: None,
        healthy: true,
    })
}

/// A request the responder script answers with its agent's name.
fn name_request() -> MeshRequest {
    MeshRequest {
        channel: Channel::Logs,
        body: Vec::new(),
    }
}

/// Asks `to` for its name through `from`.
async fn ask_name(from: &Agent, to: &Agent) -> Result<String, MeshError> {
    match from.handle.request(to.peer_id(), name_request()).await? {
        MeshResponse::Ok(body) => Ok(String::from_utf8_lossy(&body).into_owned()),
        MeshResponse::Err(err) => panic!("{} refused: {err}", to.name),
    }
}

/// Publishes heartbeats from `from` until every agent in `to` has received one.
async fn gossip_until_received(from: &Agent, to: &[&Agent]) {
    let mut seq = 0;
    eventually("every agent received the heartbeat", || {
        seq += 1;
        let gossip = heartbeat(from, seq);
        async move {
            // Fails until some peer has subscribed; that is what we wait for.
            let _ = from.handle.publish(gossip).await;
            to.iter()
                .all(|agent| !agent.gossip_from(&from.peer_id()).is_empty())
        }
    })
    .await;
}

#[tokio::test]
async fn three_agents_joined_through_one_address_identify_each_other() {
    let a = AgentSpec::new("node-a").start().await;
    let b = AgentSpec::new("node-b").join(a.addr().await).start().await;
    // One join address with the peer id, one without.
    let c = AgentSpec::new("node-c").join(a.tcp_addr().await).start().await;
    let agents = [&a, &b, &c];
    eventually("all three know each other by name", || async {
        agents.iter().all(|me| {
            agents
                .iter()
                .filter(|other| other.peer_id() != me.peer_id())
                .all(|other| me.name_of(&other.peer_id()).as_deref() == Some(other.name.as_str()))
        })
    })
    .await;
    let peers = b.handle.peers().await.expect("peers");
    let mut names: Vec<_> = peers.iter().filter_map(|peer| peer.name.clone()).collect();
    names.sort();
    assert_eq!(names, ["node-a", "node-c"]);
    assert!(peers.iter().all(|peer| !peer.addrs.is_empty()));
}

#[tokio::test]
async fn requests_round_trip_both_ways_including_a_10_mib_body() {
    let a = AgentSpec::new("node-a").start().await;
    let b = AgentSpec::new("node-b").join(a.addr().await).start().await;
    eventually("b identified a", || async {
        b.name_of(&a.peer_id()).is_some()
    })
    .await;

    assert_eq!(ask_name(&b, &a).await.expect("b asks a"), "node-a");
    assert_eq!(ask_name(&a, &b).await.expect("a asks b"), "node-b");

    let body: Vec<u8> = (0..10 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let request = MeshRequest {
        channel: Channel::Raft,
        body: body.clone(),
    };
    let echoed = a
        .handle
        .request(b.peer_id(), request)
        .await
        .expect("10 MiB round trip");
    assert!(
        echoed == MeshResponse::Ok(body),
        "the 10 MiB body came back altered"
    );
}

#[tokio::test]
async fn a_request_the_daemon_drops_is_answered_with_an_error() {
    let a = AgentSpec::new("node-a").start().await;
    let b = AgentSpec::new("node-b").join(a.addr().await).start().await;
    let dropped = MeshRequest {
        channel: Channel::Checkpoint,
        body: b"j-000001".to_vec(),
    };
    let answer = b
        .handle
        .request(a.peer_id(), dropped)
        .await
        .expect("an answer");
    assert!(matches!(answer, MeshResponse::Err(_)), "got {answer:?}");
    // The mesh is unharmed.
    assert_eq!(ask_name(&b, &a).await.expect("b asks a"), "node-a");
}

#[tokio::test]
async fn a_request_to_an_unreachable_peer_fails_instead_of_hanging() {
    let a = AgentSpec::new("node-a").start().await;
    let nowhere = libp2p::identity::Keypair::generate_ed25519()
        .public()
        .to_peer_id();
    let err = a
        .handle
        .request(nowhere, name_request())
        .await
        .expect_err("no address known");
    assert!(matches!(err, MeshError::RequestFailed { .. }), "{err}");
}

#[tokio::test]
async fn a_daemon_that_stops_reading_events_does_not_stall_the_mesh() {
    let a = AgentSpec::new("node-a").start().await;
    let asleep = AgentSpec::new("asleep")
        .event_capacity(2)
        .join(a.addr().await)
        .start_asleep()
        .await;
    eventually("a identified the sleeper", || async {
        a.name_of(&asleep.peer_id()).is_some()
    })
    .await;

    let mut seq = 0;
    eventually("the sleeper dropped gossip it could not deliver", || {
        seq += 1;
        let gossip = heartbeat(&a, seq);
        let a = &a;
        let asleep = &asleep;
        async move {
            let _ = a.handle.publish(gossip).await;
            asleep.handle.stats().gossip_events_dropped > 0
        }
    })
    .await;
    // Its swarm still runs: it answers commands and its own requests go through.
    assert_eq!(
        ask_name(&asleep, &a).await.expect("sleeper asks a"),
        "node-a"
    );
    // Requests to it wait for a daemon that never answers: the asker times out.
    let err = a
        .handle
        .request_with_timeout(asleep.peer_id(), name_request(), Duration::from_millis(300))
        .await
        .expect_err("nobody answers");
    assert!(matches!(err, MeshError::Timeout { .. }), "{err}");
}

#[tokio::test]
async fn forged_heartbeats_are_rejected_not_delivered() {
    let a = AgentSpec::new("node-a").start().await;
    let b = AgentSpec::new("node-b").join(a.addr().await).start().await;
    eventually("a identified b", || async {
        a.name_of(&b.peer_id()).is_some()
    })
    .await;
    let mut seq = 0;
    eventually("a rejected b's heartbeat in a's name", || {
        seq += 1;
        // Signed by b, claiming to be a.
        let Gossip::Heartbeat(mut forged) = heartbeat(&b, seq);
        forged.peer_id = a.peer_id().to_string();
        let (a, b) = (&a, &b);
        async move {
            let _ = b.handle.publish(Gossip::Heartbeat(forged)).await;
            a.handle.stats().gossip_rejected > 0
        }
    })
    .await;
    assert!(
        a.gossip_from(&b.peer_id()).is_empty(),
        "a forgery was delivered"
    );
}

#[tokio::test]
async fn gossip_published_by_one_reaches_the_others() {
    let a = AgentSpec::new("node-a").start().await;
    let b = AgentSpec::new("node-b").join(a.addr().await).start().await;
    let c = AgentSpec::new("node-c").join(a.addr().await).start().await;
    gossip_until_received(&c, &[&a, &b]).await;
    let Gossip::Heartbeat(received) = &b.gossip_from(&c.peer_id())[0];
    assert_eq!(received.name, "node-c");
    assert_eq!(received.gpus[0].model, "SIM-24GB");
}

#[tokio::test]
async fn only_agents_with_the_cluster_key_can_connect_and_hear_gossip() {
    let key = generate_cluster_key();
    let a = AgentSpec::new("node-a").key(key).start().await;
    let b = AgentSpec::new("node-b")
        .key(key)
        .join(a.addr().await)
        .start()
        .await;
    let stranger = AgentSpec::new("stranger")
        .key(generate_cluster_key())
        .join(a.addr().await)
        .start()
        .await;
    let open = AgentSpec::new("open").join(a.addr().await).start().await;

    eventually("b identified a", || async {
        b.name_of(&a.peer_id()).is_some()
    })
    .await;
    assert_eq!(ask_name(&b, &a).await.expect("same key"), "node-a");

    for outsider in [&stranger, &open] {
        outsider
            .handle
            .add_address(a.peer_id(), a.tcp_addr().await)
            .await
            .expect("add address");
        let refused = outsider.handle.request(a.peer_id(), name_request()).await;
        assert!(
            matches!(refused, Err(MeshError::RequestFailed { .. })),
            "{} reached a: {refused:?}",
            outsider.name
        );
    }
    // Gossip that reached b was also offered to everyone connected to a.
    gossip_until_received(&a, &[&b]).await;
    for outsider in [&stranger, &open] {
        assert!(outsider.gossip_from(&a.peer_id()).is_empty());
        assert!(outsider.handle.peers().await.expect("peers").is_empty());
        assert_eq!(a.name_of(&outsider.peer_id()), None);
    }
}

#[tokio::test]
async fn garbage_on_the_mesh_port_neither_crashes_nor_wedges_the_agent() {
    for key in [None, Some(generate_cluster_key())] {
        let mut spec = AgentSpec::new("node-a");
        if let Some(key) = key {
            spec = spec.key(key);
        }
        let a = spec.start().await;
        let port = a.port().await;
        let mut random = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let noise: Vec<u8> = (0..64 * 1024).map(|_| rand::random::<u8>()).collect();
        let _ = random.write_all(&noise).await;
        // A length prefix claiming 4 GiB, then silence with the connection held open.
        let mut liar = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let _ = liar
            .write_all(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f])
            .await;

        let mut b = AgentSpec::new("node-b").join(a.addr().await);
        if let Some(key) = key {
            b = b.key(key);
        }
        let b = b.start().await;
        assert_eq!(ask_name(&b, &a).await.expect("a still serves"), "node-a");
        drop((random, liar));
    }
}

#[tokio::test]
async fn malformed_requests_from_an_authenticated_peer_are_dropped_and_the_peer_cut_off() {
    let a = AgentSpec::new("node-a").start().await;
    let addr = a.tcp_addr().await;
    let frames: [Vec<u8>; 3] = [
        // Length over the 64 MiB limit.
        vec![0xff, 0xff, 0xff, 0xff, 1, 2, 3],
        // A valid length around bytes that are not a request (unknown channel 9).
        vec![0, 0, 0, 2, 9, 0],
        // A body claiming 2^40 bytes inside a small frame.
        vec![0, 0, 0, 10, 0, 253, 0, 0, 0, 0, 0, 1, 0, 0],
    ];
    for frame in frames {
        // A fresh peer each time: the agent hangs up on the previous one.
        let mut hostile = RawPeer::new();
        assert!(
            !hostile.send_raw(a.peer_id(), addr.clone(), frame).await,
            "garbage was answered"
        );
    }
    eventually("a counted the bad requests", || async {
        a.handle.stats().bad_requests >= 3
    })
    .await;

    let b = AgentSpec::new("node-b").join(a.addr().await).start().await;
    assert_eq!(ask_name(&b, &a).await.expect("a still serves"), "node-a");
}

#[tokio::test]
async fn an_agent_of_another_wire_version_is_refused_counted_and_never_sent_the_log() {
    let a = AgentSpec::new("node-a").start().await;
    let mut old = OldAgent::new("node-old");
    let outcome = old.visit(a.peer_id(), a.tcp_addr().await).await;
    let ours = format!("/saturn/id/{}", saturn_consensus::WIRE_VERSION);
    assert_eq!(outcome.identified_as.as_deref(), Some(ours.as_str()), "{outcome:?}");
    assert!(outcome.closed && !outcome.answered, "{outcome:?}");
    eventually("a counted the refusal", || async { a.handle.stats().other_versions >= 1 }).await;
    assert_eq!(a.name_of(&old.peer_id()), None, "an agent of another version is not a peer");
    let peers = a.handle.peers().await.expect("peers");
    assert!(peers.iter().all(|peer| peer.peer != old.peer_id() || peer.name.is_none()), "{peers:?}");

    // The agent still serves agents of its own version.
    let b = AgentSpec::new("node-b").join(a.addr().await).start().await;
    assert_eq!(ask_name(&b, &a).await.expect("a serves b"), "node-a");
}

#[tokio::test]
async fn a_persisted_key_keeps_the_peer_id_across_restarts() {
    let first = AgentSpec::new("node-a").start().await;
    let peer_id = first.peer_id();
    first.handle.shutdown().await;
    assert!(matches!(
        first.handle.peers().await,
        Err(MeshError::Shutdown)
    ));
    let restarted = AgentSpec::new("node-a").dir(first.dir).start().await;
    assert_eq!(restarted.peer_id(), peer_id);

    let key_file = agent_mesh::identity::node_key_path(restarted.dir.path());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file)
            .expect("key file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "node key must be private");
    }
    std::fs::write(&key_file, b"not a key").expect("corrupt the key");
    let err = agent_mesh::load_or_create_keypair(restarted.dir.path()).expect_err("corrupt key");
    assert!(matches!(err, MeshError::CorruptNodeKey { .. }), "{err}");
}

#[tokio::test]
async fn a_join_address_without_a_peer_id_works() {
    let a = AgentSpec::new("node-a").start().await;
    let b = AgentSpec::new("node-b")
        .join(a.tcp_addr().await)
        .start()
        .await;
    eventually("b identified a", || async {
        b.name_of(&a.peer_id()).as_deref() == Some("node-a")
    })
    .await;
    eventually("a identified b", || async {
        a.name_of(&b.peer_id()).as_deref() == Some("node-b")
    })
    .await;
}

#[tokio::test]
async fn a_cluster_key_file_round_trips_and_a_bad_one_is_a_clear_error() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let path = dir.path().join("swarm.key");
    let key = generate_cluster_key();
    agent_mesh::write_cluster_key(&path, &key).expect("write");
    assert_eq!(agent_mesh::read_cluster_key(&path).expect("read"), key);
    let text = std::fs::read_to_string(&path).expect("text");
    assert!(text.starts_with("/key/swarm/psk/1.0.0/\n/base16/\n"));

    std::fs::write(&path, "/key/swarm/psk/1.0.0/\n/base16/\nabc\n").expect("write");
    let err = agent_mesh::read_cluster_key(&path).expect_err("short key");
    assert!(matches!(err, MeshError::BadClusterKey { .. }), "{err}");
    assert!(err.to_string().contains("not 64 hex digits"), "{err}");
}
