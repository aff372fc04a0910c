//! An in-memory agent behind the HTTP API: [`FakeAgent`] implements [`AgentServices`]
//! over a [`MemCluster`] (proposals applied to its state directly, no Raft, no mesh), so
//! the real axum router can be driven in process and its effects read back.

#![allow(dead_code)] // each test binary uses a different part of it

use std::sync::Arc;

use async_trait::async_trait;
use saturn_agent::api::{AgentServices, LogPiece, RaftView, ServiceError, SoftView};
use saturn_agent::cluster::{Cluster, MemCluster};
use saturn_consensus::{AgentNode, ClusterState, Command, GpuInfo, JobId, JobSpec, PlannedAssignment, StoredPlan};

/// Log text every job of the fake has: a step, a metric and a line of plain output.
pub const LOG: &[u8] = b"SATURN step=3\nSATURN metric loss=2.5\nhello\n";

/// An agent that is its own leader and commits every proposal at once.
#[derive(Default)]
pub struct FakeAgent {
    /// Its cluster.
    pub cluster: Arc<MemCluster>,
}

impl FakeAgent {
    /// One agent with 4 GPUs, job `j-000001` scheduled, job `j-000002` cancelled, and a
    /// plan, so every endpoint has something to show.
    pub fn with_jobs() -> Arc<Self> {
        let agent = FakeAgent::default();
        {
            let state = &agent.cluster;
            let node = AgentNode { name: "fake".into(), peer_id: "12D3KooWFake".into(), addrs: vec![] };
            let gpus = (0..4).map(|index| GpuInfo { index, model: "SIM-24GB".into(), memory_mib: 24576 }).collect();
            state.apply(&Command::AgentUp { node, gpus, at_ms: 1 });
            state.apply(&Command::SubmitJobs { specs: vec![spec("first"), spec("second")], at_ms: 2 });
            state.apply(&Command::CancelJob { job: JobId::from_seq(2), at_ms: 3 });
            let assignment = PlannedAssignment {
                job: JobId::from_seq(1),
                technique: "ddp".into(),
                placement: vec![saturn_consensus::HostGpus { host: "fake".into(), gpus: vec![0] }],
                start_s: 0.0,
                end_s: 10.0,
            };
            let plan = StoredPlan { makespan_s: 10.0, assignments: vec![assignment], ..StoredPlan::default() };
            state.apply(&Command::CommitPlan { plan, at_ms: 4 });
        }
        Arc::new(agent)
    }

    /// A copy of the state now.
    pub fn snapshot(&self) -> ClusterState {
        self.cluster.snapshot()
    }

    /// The state now, shared.
    pub fn state(&self) -> Arc<ClusterState> {
        self.cluster.state()
    }

    /// Every command proposed so far.
    pub fn proposals(&self) -> Vec<Command> {
        self.cluster.proposals()
    }
}

/// A job with user-given profiles (so it is scheduled at once).
pub fn spec(name: &str) -> JobSpec {
    JobSpec {
        name: name.into(),
        command: vec!["true".into()],
        workdir: "/tmp".into(),
        env: Default::default(),
        steps: 10,
        techniques: vec!["ddp".into()],
        gpus_min: 1,
        gpus_max: 2,
        profile_group: name.into(),
        max_restarts: 0,
        profile: [("ddp".to_string(), [(1u32, 0.5)].into())].into(),
        early_stop: None,
        duration_estimate_s: 3600,
    }
}

#[async_trait]
impl AgentServices for FakeAgent {
    fn name(&self) -> String {
        "fake".into()
    }

    fn cluster(&self) -> Arc<dyn Cluster> {
        self.cluster.clone()
    }

    fn raft(&self) -> RaftView {
        RaftView { leader: Some("fake".into()), term: 1, is_leader: true, voters: vec!["fake".into()], ..RaftView::default() }
    }

    fn soft(&self) -> SoftView {
        SoftView { alive: [("fake".to_string(), true)].into(), ..SoftView::default() }
    }

    async fn read_log(&self, job: &JobId, offset: u64, max_bytes: usize) -> Result<LogPiece, ServiceError> {
        if self.cluster.snapshot().job(job).is_none() {
            return Err(ServiceError::NotFound(format!("no job {job}")));
        }
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(LOG.len());
        let end = start.saturating_add(max_bytes).min(LOG.len());
        Ok(LogPiece { data: LOG[start..end].to_vec(), next_offset: end as u64 })
    }
}
