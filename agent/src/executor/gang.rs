//! The gang environment of an attempt: which address and port its ranks meet at.
//!
//! Pure: every agent of a gang computes the same answers from the replicated state
//! (the placement and the addresses each agent announced), so the ranks agree without
//! talking to each other. The one check that needs this host (is a port free?) is a
//! function the caller passes in.

use std::net::IpAddr;

/// Where gangs' rendezvous ports start (torchrun's default port).
const PORT_BASE: u16 = 29500;
/// Ports reserved for each GPU index of a master host.
const PORTS_PER_GPU: u16 = 16;
/// GPU indices with a block of their own; higher indices share blocks (modulo). The
/// ports end at 29500 + 200 × 16 = 32700, below Linux's ephemeral range (32768+), where
/// gloo's and NCCL's own connections get their ports.
const GPU_BLOCKS: u32 = 200;

/// The ports an attempt may use as `MASTER_PORT`, best first.
///
/// Each GPU index of the master host owns a block of [`PORTS_PER_GPU`] ports, and the
/// block of an attempt is that of its first GPU there: attempts whose rank 0 is on the
/// same host hold different GPUs, so their blocks never overlap, whatever else runs.
/// Inside the block the attempt starts at an offset derived from its job and attempt,
/// so a restarted job does not reuse the port its previous attempt may still hold in
/// `TIME_WAIT`. A multi-host gang takes the first port (every rank computes the same);
/// a single-host job may skip ports some other program holds.
pub fn port_candidates(first_gpu: u32, job: &str, attempt: u32) -> impl Iterator<Item = u16> {
    let block = PORT_BASE + (first_gpu % GPU_BLOCKS) as u16 * PORTS_PER_GPU;
    let seed = saturn_consensus::node_id_for_peer(&format!("{job}/{attempt}"));
    let offset = (seed % u64::from(PORTS_PER_GPU)) as u16;
    (0..PORTS_PER_GPU).map(move |i| block + (offset + i) % PORTS_PER_GPU)
}

/// The rendezvous port of a single-host job: the first candidate `is_free` accepts
/// (the first candidate when none is).
pub fn single_host_port(first_gpu: u32, job: &str, attempt: u32, is_free: impl Fn(u16) -> bool) -> u16 {
    let mut candidates = port_candidates(first_gpu, job, attempt);
    let first = candidates.next().unwrap_or(PORT_BASE);
    if is_free(first) {
        return first;
    }
    candidates.find(|port| is_free(*port)).unwrap_or(first)
}

/// The host part of a multiaddr (`/ip4/A/...`, `/ip6/A/...`, `/dns*/NAME/...`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPart {
    Ip(IpAddr),
    Name(String),
}

fn host_part(multiaddr: &str) -> Option<HostPart> {
    let mut parts = multiaddr.split('/').skip(1);
    match (parts.next(), parts.next()) {
        (Some("ip4" | "ip6"), Some(ip)) => ip.parse().ok().map(HostPart::Ip),
        (Some("dns" | "dns4" | "dns6"), Some(name)) if !name.is_empty() => Some(HostPart::Name(name.to_owned())),
        _ => None,
    }
}

/// Addresses that never reach this host from another one.
fn is_local_only(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_unspecified() || v4.is_link_local(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.is_unspecified() || (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

/// Leading bits two addresses of one family have in common (0 across families).
fn common_prefix(a: &IpAddr, b: &IpAddr) -> u32 {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u32::from(*a) ^ u32::from(*b)).leading_zeros(),
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(*a) ^ u128::from(*b)).leading_zeros(),
        _ => 0,
    }
}

/// The address at which a host announcing `own` (its mesh multiaddrs) is reached from
/// the hosts announcing `others`; `None` when it announced no usable address.
///
/// - Without other hosts, or when every address is local-only (loopback: agents that
///   all run on one machine), the first address that is not a wildcard.
/// - Otherwise loopback, wildcard and link-local addresses are out, and so is an
///   address another host announces too (a container bridge such as docker's
///   `172.17.0.1` exists on every host and reaches none of them). Of the rest, the one
///   sharing the longest prefix with another host's address wins (the network they
///   share), IPv4 before IPv6, then the announced order; a DNS name the agent was told
///   to advertise comes after addresses that share a network and before those that
///   share none.
pub fn reachable_addr(own: &[String], others: &[&[String]]) -> Option<String> {
    let own: Vec<HostPart> = own.iter().filter_map(|a| host_part(a)).collect();
    let other_ips: Vec<IpAddr> = others
        .iter()
        .flat_map(|addrs| addrs.iter())
        .filter_map(|a| match host_part(a) {
            Some(HostPart::Ip(ip)) => Some(ip),
            _ => None,
        })
        .collect();
    let fallback = || {
        own.iter().find_map(|part| match part {
            HostPart::Ip(ip) if ip.is_unspecified() => None,
            HostPart::Ip(ip) => Some(ip.to_string()),
            HostPart::Name(name) => Some(name.clone()),
        })
    };
    if others.is_empty() {
        return fallback();
    }
    let remote_ips: Vec<&IpAddr> = other_ips.iter().filter(|ip| !is_local_only(ip)).collect();
    // (rank, announced position): lower is better.
    let best = own
        .iter()
        .enumerate()
        .filter_map(|(position, part)| {
            let rank = match part {
                HostPart::Ip(ip) if is_local_only(ip) || other_ips.contains(ip) => return None,
                HostPart::Ip(ip) => {
                    let shared = remote_ips.iter().map(|other| common_prefix(ip, other)).max().unwrap_or(0);
                    let family = u32::from(ip.is_ipv6());
                    if shared > 0 {
                        (0, 128 - shared, family)
                    } else {
                        (2, 0, family)
                    }
                }
                HostPart::Name(_) => (1, 0, 0),
            };
            Some((rank, position, part))
        })
        .min_by_key(|(rank, position, _)| (*rank, *position))
        .map(|(_, _, part)| match part {
            HostPart::Ip(ip) => ip.to_string(),
            HostPart::Name(name) => name.clone(),
        });
    best.or_else(fallback)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(list: &[&str]) -> Vec<String> {
        list.iter().map(|ip| if ip.contains(':') { format!("/ip6/{ip}/tcp/7946") } else { format!("/ip4/{ip}/tcp/7946") }).collect()
    }

    #[test]
    fn a_wildcard_listener_is_reached_at_its_network_address_not_loopback() {
        // What an agent with the default `--listen /ip4/0.0.0.0/tcp/7946` announces.
        let a = addrs(&["127.0.0.1", "10.213.0.1"]);
        let b = addrs(&["127.0.0.1", "10.213.0.2"]);
        assert_eq!(reachable_addr(&a, &[&b]).as_deref(), Some("10.213.0.1"));
        assert_eq!(reachable_addr(&b, &[&a]).as_deref(), Some("10.213.0.2"));
    }

    #[test]
    fn a_bridge_address_every_host_has_is_never_chosen_and_the_shared_network_wins() {
        let a = addrs(&["127.0.0.1", "172.17.0.1", "192.168.7.20", "10.40.0.5"]);
        let b = addrs(&["127.0.0.1", "172.17.0.1", "10.40.0.9"]);
        assert_eq!(reachable_addr(&a, &[&b]).as_deref(), Some("10.40.0.5"));
        assert_eq!(reachable_addr(&b, &[&a]).as_deref(), Some("10.40.0.9"));
    }

    #[test]
    fn agents_all_on_one_machine_meet_on_loopback() {
        let a = vec!["/ip4/127.0.0.1/tcp/40001".to_string()];
        let b = vec!["/ip4/127.0.0.1/tcp/40002".to_string()];
        assert_eq!(reachable_addr(&a, &[&b]).as_deref(), Some("127.0.0.1"));
    }

    #[test]
    fn wildcards_link_local_and_unparsable_addresses_are_never_chosen() {
        let a = vec!["/ip4/0.0.0.0/tcp/7946".to_string(), "/ip4/169.254.3.3/tcp/7946".to_string(), "/ip6/fe80::1/tcp/7946".to_string(), "garbage".to_string(), "/ip6/2001:db8::5/tcp/7946".to_string()];
        let b = addrs(&["2001:db8::9"]);
        assert_eq!(reachable_addr(&a, &[&b]).as_deref(), Some("2001:db8::5"));
        assert_eq!(reachable_addr(&["/ip4/0.0.0.0/tcp/1".to_string()], &[&b]), None);
    }

    #[test]
    fn an_advertised_name_beats_an_address_sharing_no_network() {
        let a = vec!["/ip4/192.168.1.5/tcp/7946".to_string(), "/dns4/node-a.lab/tcp/7946".to_string()];
        let b = addrs(&["10.0.0.2"]);
        assert_eq!(reachable_addr(&a, &[&b]).as_deref(), Some("node-a.lab"));
        let c = addrs(&["192.168.1.9"]);
        assert_eq!(reachable_addr(&a, &[&c]).as_deref(), Some("192.168.1.5"));
    }

    #[test]
    fn without_other_hosts_the_first_concrete_address() {
        assert_eq!(reachable_addr(&addrs(&["0.0.0.0", "127.0.0.1", "10.0.0.1"]), &[]).as_deref(), Some("127.0.0.1"));
    }

    #[test]
    fn live_attempts_with_rank_zero_on_one_host_never_share_a_port() {
        // Different first GPUs: disjoint blocks, whatever the jobs.
        let mut seen = std::collections::BTreeSet::new();
        for gpu in 0..8 {
            for port in port_candidates(gpu, &format!("j-00000{gpu}"), 1) {
                assert!(seen.insert(port), "port {port} in two blocks");
                assert!((29500..32700).contains(&port));
            }
        }
    }

    #[test]
    fn every_rank_gets_the_same_port_and_a_restart_usually_another() {
        let first = |attempt| port_candidates(3, "j-000042", attempt).next();
        assert_eq!(first(1), first(1));
        let distinct: std::collections::BTreeSet<_> = (1..=8).filter_map(first).collect();
        assert!(distinct.len() > 1, "eight attempts of one job all got one port");
    }

    #[test]
    fn a_single_host_job_skips_ports_in_use() {
        let all: Vec<u16> = port_candidates(0, "j-000001", 1).collect();
        assert_eq!(all.len(), 16);
        let busy = all[0];
        let port = single_host_port(0, "j-000001", 1, |p| p != busy);
        assert_eq!(port, all[1]);
        assert_eq!(single_host_port(0, "j-000001", 1, |_| false), all[0]);
    }
}
