//! The network itself: a hub namespace with a bridge, one namespace per agent joined to
//! it by a veth pair, and the faults (links down, one-way drops) between them. Every
//! change is an `ip` command run on namespaces this module created; the host's own
//! network namespace is never touched.

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Prefix of every namespace this harness creates: `saturn-pt-<pid>-<n>-`.
pub const PREFIX: &str = "saturn-pt-";

/// Runs `ip ARGS`, failing with the command line and its stderr.
pub fn ip(args: &[&str]) -> Result<String> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .with_context(|| format!("cannot run `ip {}`", args.join(" ")))?;
    if !output.status.success() {
        bail!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Pids of every process in namespace `ns`.
pub fn pids_in(ns: &str) -> Vec<u32> {
    ip(&["netns", "pids", ns])
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Kills every process in `ns` and waits (up to 3 s) until they are gone.
fn kill_everything_in(ns: &str) {
    for pid in pids_in(ns) {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while !pids_in(ns).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kills every process in `ns` (agents and their jobs) and deletes it.
fn destroy_namespace(ns: &str) {
    kill_everything_in(ns);
    let _ = ip(&["netns", "del", ns]);
}

/// Removes namespaces named like ours whose test process is gone (a crashed or killed
/// run), and any starting with `ours` (a dead run that had our pid).
pub fn remove_stale(ours: &str) {
    let listing = ip(&["netns", "list"]).unwrap_or_default();
    for ns in listing
        .lines()
        .filter_map(|line| line.split_whitespace().next())
    {
        let Some(rest) = ns.strip_prefix(PREFIX) else {
            continue;
        };
        let owner_alive = rest
            .split('-')
            .next()
            .and_then(|pid| pid.parse::<u32>().ok())
            .is_some_and(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists());
        if !owner_alive || ns.starts_with(ours) {
            destroy_namespace(ns);
        }
    }
}

/// Agent `i`'s address on the bridge: `10.213.0.(i+1)`. Every topology has its own
/// bridge, so topologies may reuse addresses.
pub fn address(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 213, 0, i as u8 + 1)
}

/// A hub with a bridge and `n` agent namespaces on it; deleted (with every process
/// still inside) on drop.
#[derive(Debug)]
pub struct Topology {
    hub: String,
    members: Vec<String>,
}

impl Topology {
    /// Creates the hub and `n` member namespaces named `{prefix}hub`, `{prefix}a0`, ...
    pub fn create(prefix: &str, n: usize) -> Result<Self> {
        let hub = format!("{prefix}hub");
        ip(&["netns", "add", &hub])?;
        // From here on, a failure drops `topology`, which removes what was made so far.
        let mut topology = Topology {
            hub,
            members: Vec::new(),
        };
        ip(&["-n", &topology.hub, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &topology.hub, "link", "set", "br0", "up"])?;
        for i in 0..n {
            let ns = format!("{prefix}a{i}");
            ip(&["netns", "add", &ns])?;
            topology.members.push(ns.clone());
            topology.wire(i, &ns)?;
        }
        Ok(topology)
    }

    fn wire(&self, i: usize, ns: &str) -> Result<()> {
        // The pair is made inside the namespaces: the host's namespace never sees it.
        let veth = format!("v{i}");
        ip(&[
            "-n", &self.hub, "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns",
            ns,
        ])?;
        ip(&["-n", &self.hub, "link", "set", &veth, "master", "br0", "up"])?;
        ip(&[
            "-n",
            ns,
            "addr",
            "add",
            &format!("{}/24", address(i)),
            "dev",
            "eth0",
        ])?;
        ip(&["-n", ns, "link", "set", "eth0", "up"])?;
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        // Rules are consulted in order and the `local` table (delivery to this host) sits
        // at preference 0; move it behind room for the drop rules of `drop_from`.
        ip(&["-n", ns, "rule", "add", "pref", "100", "lookup", "local"])?;
        ip(&["-n", ns, "rule", "del", "pref", "0"])?;
        Ok(())
    }

    /// Namespace of member `i`.
    pub fn netns(&self, i: usize) -> &str {
        &self.members[i]
    }

    /// Kills every process left in the member namespaces (job processes of agents
    /// that were killed or did not stop them).
    pub fn kill_everything(&self) {
        self.members.iter().for_each(|ns| kill_everything_in(ns));
    }

    /// Cuts member `i` off from everyone, both ways (its link goes down at the hub).
    pub fn isolate(&self, i: usize) -> Result<()> {
        ip(&["-n", &self.hub, "link", "set", &format!("v{i}"), "down"]).map(drop)
    }

    /// Undoes [`isolate`](Self::isolate) of member `i` (one-way drops stay).
    pub fn heal(&self, i: usize) -> Result<()> {
        ip(&["-n", &self.hub, "link", "set", &format!("v{i}"), "up"]).map(drop)
    }

    /// From now on packets from `from` to `to` are dropped, silently, on arrival at `to`.
    pub fn drop_from(&self, from: usize, to: usize) -> Result<()> {
        let source = format!("{}/32", address(from));
        ip(&[
            "-n",
            &self.members[to],
            "rule",
            "add",
            "pref",
            "10",
            "from",
            &source,
            "blackhole",
        ])
        .map(drop)
    }

    /// Lets packets from `from` to `to` through again.
    pub fn undrop(&self, from: usize, to: usize) -> Result<()> {
        let source = format!("{}/32", address(from));
        ip(&[
            "-n",
            &self.members[to],
            "rule",
            "del",
            "pref",
            "10",
            "from",
            &source,
            "blackhole",
        ])
        .map(drop)
    }

    /// Cuts the link between `i` and `j` both ways; others still reach both.
    pub fn cut(&self, i: usize, j: usize) -> Result<()> {
        self.drop_from(i, j)?;
        self.drop_from(j, i)
    }

    /// Removes every fault: links up, drop rules gone.
    pub fn heal_all(&self) -> Result<()> {
        for (i, ns) in self.members.iter().enumerate() {
            self.heal(i)?;
            // `ip rule del pref 10` removes one rule per call and fails once none is left.
            while ip(&["-n", ns, "rule", "del", "pref", "10"]).is_ok() {}
        }
        Ok(())
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        // Whatever still runs inside (job processes an agent left) dies with it.
        for ns in &self.members {
            destroy_namespace(ns);
        }
        destroy_namespace(&self.hub);
    }
}
