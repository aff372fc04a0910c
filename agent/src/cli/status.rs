//! `saturn status`: the mesh as the answering agent sees it.

use anyhow::Result;

use super::{table, Connection};
use crate::views::StatusView;

/// Prints the mesh: leader, term, agents with role, health and GPUs.
pub async fn run(conn: &Connection) -> Result<i32> {
    let client = conn.client()?;
    let status: StatusView = client.get_json("/v1/status").await?;
    if conn.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(0);
    }
    print!("{}", render(&status));
    Ok(0)
}

/// The human form of [`StatusView`].
pub fn render(status: &StatusView) -> String {
    let leader = status.leader.as_deref().unwrap_or("(none: election in progress)");
    let mut out = format!("leader: {leader}   term: {}   agents: {}\n\n", status.term, status.agents.len());
    let rows: Vec<Vec<String>> = status
        .agents
        .iter()
        .map(|agent| {
            let busy = agent.gpus.iter().filter(|g| g.busy_job.is_some()).count();
            let models = gpu_models(&agent.gpus);
            vec![
                agent.name.clone(),
                agent.role.clone(),
                if agent.healthy { "healthy".into() } else { "DOWN".into() },
                format!("{busy}/{} busy", agent.gpus.len()),
                models,
                agent.addrs.first().cloned().unwrap_or_default(),
            ]
        })
        .collect();
    out.push_str(&table::render(&["AGENT", "ROLE", "HEALTH", "GPUS", "MODELS", "ADDRESS"], &rows));
    out
}

fn gpu_models(gpus: &[crate::views::GpuView]) -> String {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for gpu in gpus {
        match counts.iter_mut().find(|(m, _)| *m == gpu.model) {
            Some((_, n)) => *n += 1,
            None => counts.push((gpu.model.clone(), 1)),
        }
    }
    if counts.is_empty() {
        return "-".to_string();
    }
    counts.iter().map(|(m, n)| format!("{n}x{m}")).collect::<Vec<_>>().join(",")
}
