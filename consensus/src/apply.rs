//! State transitions: [`ClusterState::apply`], the last line of defence.
//!
//! Apply is pure and deterministic (no clock, no randomness, ordered maps only), so every
//! replica that applies the same log reaches the same state. It re-checks every safety
//! rule itself instead of trusting the proposer, which may be a deposed leader acting on
//! an old view:
//! - a job never has two live attempts, and a GPU is held by at most one live attempt;
//! - events and preemptions naming an attempt other than the live one are ignored;
//! - ids, attempt numbers and plan epochs are assigned here and nowhere else.
//!
//! A rejected command leaves the state unchanged (apart from the `rejected` counter).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::command::{
    Attempt, AttemptEvent, Command, CommandResult, DispatchKind, JobPhase, ProfileKey, ProfileResult, Rejection, StoredPlan,
    STEP_TIME_METRIC,
};
use crate::early_stop::record_rungs;
use crate::job::{JobId, JobSpec, Placement};
use crate::node::{AgentNode, GpuInfo};
use crate::state::{AgentRecord, AttemptStatus, ClusterState, GpuHolder, JobRecord, JobState, LiveAttempt};

type Outcome = Result<CommandResult, Rejection>;

impl ClusterState {
    /// Applies one committed command and says what it did.
    pub fn apply(&mut self, command: &Command) -> CommandResult {
        let outcome = match command {
            Command::SubmitJobs { specs, at_ms } => Ok(self.submit(specs, *at_ms)),
            Command::CancelJob { job, at_ms } => self.cancel(job, *at_ms),
            Command::SetJobPhase { job, phase, .. } => self.set_phase(job, *phase),
            Command::RecordProfile { key, result } => {
                self.profiles.insert(key.clone(), result.clone());
                Ok(CommandResult::Applied)
            }
            Command::CommitPlan { plan, at_ms } => Ok(self.commit_plan(plan, *at_ms)),
            Command::Dispatch { job, technique, placement, kind, at_ms } => {
                self.dispatch(job, technique, placement, kind, *at_ms)
            }
            Command::JobEvent { job, attempt, event, at_ms } => self.job_event(job, *attempt, event, *at_ms),
            Command::Preempt { job, attempt, .. } => self.preempt(job, *attempt),
            Command::AgentUp { node, gpus, at_ms } => Ok(self.agent_up(node, gpus, *at_ms)),
            Command::AgentDown { name, at_ms } => self.agent_down(name, *at_ms),
            Command::FailJob { job, reason, at_ms } => self.fail(job, reason, *at_ms),
            Command::StopJob { job, reason, at_ms } => self.stop_early(job, reason, *at_ms),
            Command::CheckpointCopied { job, step, host, digest, bytes, at_ms } => {
                self.checkpoint_copied(job, *step, host, digest, *bytes, *at_ms)
            }
            Command::CheckpointDropped { job, step, host, reason, at_ms } => {
                self.checkpoint_dropped(job, *step, host, reason, *at_ms)
            }
            Command::CheckpointRootMarked { marker } => {
                self.checkpoint_root_marker.get_or_insert_with(|| marker.clone());
                Ok(CommandResult::Applied)
            }
        };
        outcome.unwrap_or_else(|rejection| {
            self.counters.rejected += 1;
            CommandResult::Rejected(rejection)
        })
    }

    fn submit(&mut self, specs: &[JobSpec], at_ms: u64) -> CommandResult {
        let mut ids = Vec::with_capacity(specs.len());
        let first = JobId::from_seq(self.last_job_seq + 1);
        for spec in specs {
            self.last_job_seq += 1;
            let id = JobId::from_seq(self.last_job_seq);
            let mut spec = spec.clone();
            if let Some(rule) = spec.early_stop.as_mut() {
                // Sweeps of different submissions are never compared with each other.
                rule.sweep = format!("{}@{first}", rule.sweep);
            }
            let state = if user_profiles_cover(&spec) { JobState::Scheduled } else { JobState::Queued };
            self.jobs.insert(id.clone(), Arc::new(JobRecord::new(id.clone(), spec, state, at_ms)));
            ids.push(id);
        }
        CommandResult::Submitted { jobs: ids }
    }

    fn cancel(&mut self, id: &JobId, at_ms: u64) -> Outcome {
        let record = self.active_job_mut(id)?;
        record.state = JobState::Cancelled;
        match record.live.as_mut() {
            // The job stays cancelled-with-a-live-attempt until the attempt exits or is
            // lost: its GPUs are only freed once its processes are known to be gone.
            Some(live) => live.status = AttemptStatus::Stopping,
            None => record.finished_at_ms = Some(at_ms),
        }
        Ok(CommandResult::Applied)
    }

    fn fail(&mut self, id: &JobId, reason: &str, at_ms: u64) -> Outcome {
        let record = self.active_job_mut(id)?;
        if let Some(live) = &record.live {
            return Err(wrong_state(id, format!("attempt {} is live", live.attempt)));
        }
        record.state = JobState::Failed;
        record.error = Some(reason.to_string());
        record.finished_at_ms = Some(at_ms);
        Ok(CommandResult::Applied)
    }

    /// Like a cancel, but by the sweep's rule: the job ends `stopped` (once its live
    /// attempt, if any, has exited after its SIGTERM and checkpoint).
    fn stop_early(&mut self, id: &JobId, reason: &str, at_ms: u64) -> Outcome {
        let record = self.active_job_mut(id)?;
        if record.spec.early_stop.is_none() {
            return Err(wrong_state(id, "it belongs to no sweep with early_stop".to_string()));
        }
        record.state = JobState::Stopped;
        record.stop_reason = Some(reason.to_string());
        match record.live.as_mut() {
            Some(live) => live.status = AttemptStatus::Stopping,
            None => record.finished_at_ms = Some(at_ms),
        }
        self.counters.early_stops += 1;
        Ok(CommandResult::Applied)
    }

    fn set_phase(&mut self, id: &JobId, phase: JobPhase) -> Outcome {
        let record = self.active_job_mut(id)?;
        if let Some(live) = &record.live {
            return Err(wrong_state(id, format!("attempt {} is live", live.attempt)));
        }
        record.state = match phase {
            JobPhase::Queued => JobState::Queued,
            JobPhase::Profiling => JobState::Profiling,
            JobPhase::Scheduled => JobState::Scheduled,
        };
        Ok(CommandResult::Applied)
    }

    fn commit_plan(&mut self, plan: &StoredPlan, at_ms: u64) -> CommandResult {
        self.plan_epoch += 1;
        let mut stored = plan.clone();
        stored.epoch = self.plan_epoch;
        stored.committed_at_ms = at_ms;
        self.plan = Some(stored);
        CommandResult::PlanCommitted { epoch: self.plan_epoch }
    }

    fn dispatch(&mut self, id: &JobId, technique: &str, placement: &Placement, kind: &DispatchKind, at_ms: u64) -> Outcome {
        let record = self.jobs.get(id).ok_or_else(|| Rejection::UnknownJob(id.clone()))?;
        if record.state.is_terminal() {
            return Err(Rejection::JobEnded(id.clone()));
        }
        if let Some(live) = &record.live {
            return Err(Rejection::AttemptLive { job: id.clone(), attempt: live.attempt });
        }
        if !record.spec.techniques.iter().any(|t| t == technique) {
            return Err(Rejection::UnknownTechnique { job: id.clone(), technique: technique.to_string() });
        }
        self.check_placement_free(placement)?;

        let record = self.jobs.get_mut(id).map(Arc::make_mut).ok_or_else(|| Rejection::UnknownJob(id.clone()))?;
        let attempt = record.attempt + 1;
        let (start_step, return_state) = match kind {
            DispatchKind::Train => {
                record.state = JobState::Running;
                record.technique = Some(technique.to_string());
                record.placement = placement.clone();
                (record.last_checkpoint, JobState::Scheduled)
            }
            DispatchKind::Trial { .. } => {
                let back = if record.state == JobState::Scheduled { JobState::Scheduled } else { JobState::Profiling };
                record.state = JobState::Profiling;
                record.trials += 1;
                (0, back)
            }
        };
        record.attempt = attempt;
        record.live = Some(LiveAttempt {
            attempt,
            technique: technique.to_string(),
            placement: placement.clone(),
            kind: kind.clone(),
            status: AttemptStatus::Running,
            start_step,
            dispatched_at_ms: at_ms,
            started_at_ms: None,
            reported_progress: false,
            metrics: Vec::new(),
            return_state,
            resumed: false,
        });
        for host_gpus in placement {
            for gpu in &host_gpus.gpus {
                self.gpus.insert((host_gpus.host.clone(), *gpu), GpuHolder { job: id.clone(), attempt });
            }
        }
        self.counters.dispatches += 1;
        Ok(CommandResult::Dispatched { job: id.clone(), attempt })
    }

    /// Every (host, gpu) of `placement` exists on an up host, is named once and is free.
    fn check_placement_free(&self, placement: &Placement) -> Result<(), Rejection> {
        if placement.is_empty() || placement.iter().any(|hg| hg.gpus.is_empty()) {
            return Err(Rejection::BadPlacement("no GPUs".to_string()));
        }
        let mut seen = std::collections::BTreeSet::new();
        for host_gpus in placement {
            let host = &host_gpus.host;
            let agent = self.agents.get(host).filter(|agent| agent.up);
            let agent = agent.ok_or_else(|| Rejection::HostNotUp(host.clone()))?;
            for &gpu in &host_gpus.gpus {
                if !seen.insert((host.as_str(), gpu)) {
                    return Err(Rejection::BadPlacement(format!("GPU {gpu} of {host} named twice")));
                }
                if !agent.gpus.iter().any(|info| info.index == gpu) {
                    return Err(Rejection::NoSuchGpu { host: host.clone(), gpu });
                }
                if let Some(holder) = self.gpus.get(&(host.clone(), gpu)) {
                    let (job, attempt) = (holder.job.clone(), holder.attempt);
                    return Err(Rejection::GpuBusy { host: host.clone(), gpu, job, attempt });
                }
            }
        }
        Ok(())
    }

    fn job_event(&mut self, id: &JobId, attempt: Attempt, event: &AttemptEvent, at_ms: u64) -> Outcome {
        let record = self.jobs.get_mut(id).map(Arc::make_mut).ok_or_else(|| Rejection::UnknownJob(id.clone()))?;
        let live = match record.live.as_mut() {
            Some(live) if live.attempt == attempt => live,
            _ => return Err(Rejection::StaleAttempt { job: id.clone(), attempt }),
        };
        let training = live.kind == DispatchKind::Train;
        match event {
            AttemptEvent::Started => {
                live.started_at_ms.get_or_insert(at_ms);
                if training {
                    record.started_at_ms.get_or_insert(at_ms);
                }
            }
            AttemptEvent::Progress { step, metrics } => {
                live.reported_progress = true;
                merge_metrics(&mut live.metrics, metrics);
                if training {
                    record.steps_done = *step;
                    let dropped = merge_metrics(&mut record.metrics, metrics);
                    if !dropped.is_empty() && !record.notes.iter().any(|n| n.text.starts_with(METRICS_DROPPED)) {
                        let text = format!(
                            "{METRICS_DROPPED}: the job reported more than {MAX_METRIC_NAMES} distinct metric names; new names are ignored (first ignored: {})",
                            dropped.join(", ")
                        );
                        record.note(at_ms, text);
                    }
                    record.record_rungs(*step);
                }
            }
            AttemptEvent::Checkpoint { step } => {
                // A trial's checkpoints are not the job's: a restart must not resume there.
                if training {
                    record.last_checkpoint = *step;
                    record.steps_done = record.steps_done.max(*step);
                }
            }
            AttemptEvent::TrialStepTime { seconds_per_step, .. } => {
                trial_verdict(&mut self.profiles, live, ProfileResult::StepTime(*seconds_per_step))
                    .map_err(|why| wrong_state(id, why))?;
                // Kept with the attempt too, as the step-0 report of older logs did.
                live.reported_progress = true;
                merge_metrics(&mut live.metrics, &[(STEP_TIME_METRIC.to_string(), *seconds_per_step)]);
            }
            AttemptEvent::TrialNoSteps => {
                trial_verdict(&mut self.profiles, live, ProfileResult::NoSteps).map_err(|why| wrong_state(id, why))?;
            }
            AttemptEvent::Exited { code, error } => self.attempt_exited(id, *code, error.clone(), at_ms),
            AttemptEvent::HandBack { code, error } => {
                // A preemption and its exit (what older logs hold as two commands).
                if live.status == AttemptStatus::Running {
                    live.status = AttemptStatus::Stopping;
                    self.counters.preemptions += 1;
                }
                self.attempt_exited(id, *code, error.clone(), at_ms);
            }
            AttemptEvent::CheckpointStored { .. } | AttemptEvent::CheckpointRefused { .. } | AttemptEvent::Resumed { .. } => {
                return self.checkpoint_event(id, event, at_ms);
            }
        }
        Ok(CommandResult::Applied)
    }

    /// The live attempt of `id` exited: free its GPUs and decide what the job becomes.
    fn attempt_exited(&mut self, id: &JobId, code: Option<i32>, error: Option<String>, at_ms: u64) {
        let Some(live) = self.release_live_attempt(id) else { return };
        let Some(record) = self.jobs.get_mut(id).map(Arc::make_mut) else { return };
        record.exit_code = code;
        if let DispatchKind::Trial { profile_key, .. } = &live.kind {
            // A stopped trial measured nothing; a finished or crashed one did.
            if live.status == AttemptStatus::Running {
                let result = trial_result(&live, code, error);
                self.profiles.insert(profile_key.clone(), result);
            }
            finish_or_return(record, &live, at_ms);
            return;
        }
        let finished = code == Some(0) && (record.steps_done >= record.spec.steps || !live.reported_progress);
        if record.state.is_terminal() || live.status == AttemptStatus::Stopping {
            // Stopped on purpose (preempted, cancelled or stopped early): not a failure.
            finish_or_return(record, &live, at_ms);
        } else if finished {
            record.state = JobState::Completed;
            record.steps_done = record.steps_done.max(record.spec.steps);
            record.finished_at_ms = Some(at_ms);
        } else {
            let why = error.unwrap_or_else(|| exit_description(live.attempt, code));
            record.error = Some(why);
            if record.restarts >= record.spec.max_restarts {
                record.state = JobState::Failed;
                record.finished_at_ms = Some(at_ms);
            } else {
                record.restarts += 1;
                self.counters.restarts += 1;
                finish_or_return(record, &live, at_ms);
            }
        }
    }

    fn preempt(&mut self, id: &JobId, attempt: Attempt) -> Outcome {
        let record = self.jobs.get_mut(id).map(Arc::make_mut).ok_or_else(|| Rejection::UnknownJob(id.clone()))?;
        let live = match record.live.as_mut() {
            Some(live) if live.attempt == attempt => live,
            _ => return Err(Rejection::StaleAttempt { job: id.clone(), attempt }),
        };
        if live.status == AttemptStatus::Stopping {
            return Err(wrong_state(id, format!("attempt {attempt} is already stopping")));
        }
        live.status = AttemptStatus::Stopping;
        self.counters.preemptions += 1;
        Ok(CommandResult::Applied)
    }

    fn agent_up(&mut self, node: &AgentNode, gpus: &[GpuInfo], at_ms: u64) -> CommandResult {
        let record = self.agents.entry(node.name.clone()).or_insert_with(|| AgentRecord {
            node: node.clone(),
            gpus: Vec::new(),
            up: false,
            since_ms: at_ms,
        });
        if !record.up {
            record.up = true;
            record.since_ms = at_ms;
        }
        record.node = node.clone();
        record.gpus = gpus.to_vec();
        CommandResult::Applied
    }

    fn agent_down(&mut self, name: &str, at_ms: u64) -> Outcome {
        let agent = self.agents.get_mut(name).ok_or_else(|| Rejection::UnknownAgent(name.to_string()))?;
        if !agent.up {
            return Ok(CommandResult::Applied);
        }
        agent.up = false;
        agent.since_ms = at_ms;
        let lost: Vec<JobId> = self.attempts_on_host(name).map(|(record, _)| record.id.clone()).collect();
        for id in lost {
            // The whole gang ends, on every host: its other members cannot go on alone.
            let Some(live) = self.release_live_attempt(&id) else { continue };
            self.counters.lost_attempts += 1;
            if let Some(record) = self.jobs.get_mut(&id).map(Arc::make_mut) {
                finish_or_return(record, &live, at_ms);
            }
        }
        Ok(CommandResult::Applied)
    }

    /// Takes the live attempt of `id` off the job and frees its GPUs.
    fn release_live_attempt(&mut self, id: &JobId) -> Option<LiveAttempt> {
        let live = self.jobs.get_mut(id).map(Arc::make_mut)?.live.take()?;
        for host_gpus in &live.placement {
            for gpu in &host_gpus.gpus {
                let slot = (host_gpus.host.clone(), *gpu);
                if self.gpus.get(&slot).is_some_and(|h| h.job == *id && h.attempt == live.attempt) {
                    self.gpus.remove(&slot);
                }
            }
        }
        Some(live)
    }

    /// A job that is neither cancelled nor ended must exist, or the command is rejected.
    fn active_job_mut(&mut self, id: &JobId) -> Result<&mut JobRecord, Rejection> {
        let record = self.jobs.get_mut(id).map(Arc::make_mut).ok_or_else(|| Rejection::UnknownJob(id.clone()))?;
        if record.state.is_terminal() {
            return Err(Rejection::JobEnded(id.clone()));
        }
        Ok(record)
    }
}

impl JobRecord {
    fn new(id: JobId, spec: JobSpec, state: JobState, at_ms: u64) -> Self {
        JobRecord {
            id,
            spec,
            state,
            steps_done: 0,
            last_checkpoint: 0,
            attempt: 0,
            live: None,
            technique: None,
            placement: Vec::new(),
            submitted_at_ms: at_ms,
            started_at_ms: None,
            finished_at_ms: None,
            exit_code: None,
            error: None,
            restarts: 0,
            metrics: Vec::new(),
            rungs: Vec::new(),
            stop_reason: None,
            checkpoints: Default::default(),
            notes: Vec::new(),
            bytes_replicated: 0,
            trials: 0,
        }
    }

    /// Records the early-stopping metric at every rung step `step` reached first now
    /// (see [`early_stop`](crate::early_stop)); the value is the latest one reported.
    fn record_rungs(&mut self, step: u64) {
        let Some(rule) = &self.spec.early_stop else { return };
        let Some(value) = self.metrics.iter().find(|(name, _)| *name == rule.metric).map(|(_, v)| *v) else { return };
        record_rungs(rule, &mut self.rungs, step.min(self.spec.steps), value);
    }
}

/// After an attempt ended without finishing the job: a cancelled (or early-stopped) job
/// is now finished, any other goes back to waiting and resumes from its last checkpoint.
fn finish_or_return(record: &mut JobRecord, live: &LiveAttempt, at_ms: u64) {
    if matches!(record.state, JobState::Cancelled | JobState::Stopped) {
        record.finished_at_ms = Some(at_ms);
        return;
    }
    record.state = live.return_state;
    if live.kind == DispatchKind::Train {
        record.steps_done = record.last_checkpoint;
    }
}

/// A job needs no trial run when the user gave a step time for every technique it has.
fn user_profiles_cover(spec: &JobSpec) -> bool {
    !spec.techniques.is_empty()
        && spec.techniques.iter().all(|t| spec.profile.get(t).is_some_and(|counts| !counts.is_empty()))
}

/// A trial's verdict (`TrialStepTime`, `TrialNoSteps`): the profile now, and the attempt
/// stopping, so the exit that follows is expected and does not overwrite it. A trial
/// already stopping (preempted) measured nothing; a training attempt has no verdict.
fn trial_verdict(
    profiles: &mut BTreeMap<ProfileKey, ProfileResult>,
    live: &mut LiveAttempt,
    result: ProfileResult,
) -> Result<(), String> {
    let DispatchKind::Trial { profile_key, .. } = &live.kind else {
        return Err(format!("attempt {} is not a trial", live.attempt));
    };
    if live.status == AttemptStatus::Running {
        profiles.insert(profile_key.clone(), result);
        live.status = AttemptStatus::Stopping;
    }
    Ok(())
}

fn trial_result(live: &LiveAttempt, code: Option<i32>, error: Option<String>) -> ProfileResult {
    match (code, live.trial_step_time()) {
        (Some(0), Some(seconds)) => ProfileResult::StepTime(seconds),
        (Some(0), None) if !live.reported_progress => ProfileResult::NoSteps,
        (Some(0), None) => ProfileResult::Infeasible { reason: "trial run reported no step time".to_string() },
        _ => ProfileResult::Infeasible { reason: error.unwrap_or_else(|| exit_description(live.attempt, code)) },
    }
}

fn exit_description(attempt: Attempt, code: Option<i32>) -> String {
    match code {
        Some(code) => format!("attempt {attempt} exited with status {code}"),
        None => format!("attempt {attempt} was killed by a signal"),
    }
}

/// Most distinct metric names a job (and each attempt) keeps in the replicated state: a
/// job printing ever new names must not grow every agent's state without bound.
pub const MAX_METRIC_NAMES: usize = 64;

/// How the note about ignored metric names starts (it is written once per job).
const METRICS_DROPPED: &str = "metrics ignored";

/// Updates `into` with `new`; a name beyond [`MAX_METRIC_NAMES`] is not added. Returns
/// the names not added.
fn merge_metrics(into: &mut Vec<(String, f64)>, new: &[(String, f64)]) -> Vec<String> {
    let mut dropped = Vec::new();
    for (name, value) in new {
        let room = into.len() < MAX_METRIC_NAMES || name == STEP_TIME_METRIC;
        match into.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = *value,
            None if room => into.push((name.clone(), *value)),
            None => dropped.push(name.clone()),
        }
    }
    dropped
}

pub(crate) fn wrong_state(id: &JobId, why: String) -> Rejection {
    Rejection::WrongState { job: id.clone(), why }
}
