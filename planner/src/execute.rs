//! A discrete-event executor of a plan, as the agents run one: each GPU works through its
//! jobs in planned order, and a job starts as soon as its release time has passed, all its
//! planned GPUs are idle and it is next in line on each of them — not at its planned start
//! time, so reality running faster or slower than planned shifts the rest of the plan.

use crate::instance::{Instance, PlacementEntry};
use crate::plan::Plan;

/// A job's life in the execution.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Phase {
    /// Not started under the current plan.
    Waiting,
    /// Running; steps accrue from `progress_from` (after any switch delay) until `end`.
    Running { progress_from: f64, end: f64 },
    /// Finished.
    Done,
}

/// Execution state: what each job does, where, and how fast it really is.
#[derive(Debug, Clone)]
pub(crate) struct Execution {
    pub now: f64,
    pub phase: Vec<Phase>,
    /// Steps left at the moment the job last started (or at plan adoption while waiting).
    pub remaining: Vec<f64>,
    /// Current (or planned) option and global GPU ids per job.
    pub option: Vec<usize>,
    pub gpus: Vec<Vec<u32>>,
    /// Whether the job's next start pays the switch cost (it was moved by a re-plan).
    pub pays_switch: Vec<bool>,
    /// Per GPU: jobs in planned order that have not started yet.
    queue: Vec<Vec<usize>>,
    busy: Vec<bool>,
    release: Vec<f64>,
    switch_cost: f64,
    first_gpu: Vec<u32>,
}

impl Execution {
    /// Nothing started yet, no plan.
    pub fn new(instance: &Instance) -> Self {
        let n = instance.jobs.len();
        let mut first_gpu = Vec::new();
        let mut total = 0;
        for h in &instance.hosts {
            first_gpu.push(total);
            total += h.gpus;
        }
        Execution {
            now: 0.0,
            phase: vec![Phase::Waiting; n],
            remaining: instance.jobs.iter().map(|j| j.steps as f64).collect(),
            option: vec![0; n],
            gpus: vec![Vec::new(); n],
            pays_switch: vec![false; n],
            queue: vec![Vec::new(); total as usize],
            busy: vec![false; total as usize],
            release: instance.jobs.iter().map(|j| j.release_s).collect(),
            switch_cost: instance.switch_cost_s,
            first_gpu,
        }
    }

    /// Global GPU ids of a placement.
    pub fn global_gpus(&self, instance: &Instance, placement: &[PlacementEntry]) -> Vec<u32> {
        placement
            .iter()
            .flat_map(|e| {
                let h = instance.hosts.iter().position(|h| h.name == e.host).unwrap_or(0);
                e.gpus.iter().map(move |&g| self.first_gpu[h] + g)
            })
            .collect()
    }

    /// The placement of global GPU ids.
    pub fn placement(&self, instance: &Instance, gpus: &[u32]) -> Vec<PlacementEntry> {
        let mut entries: Vec<PlacementEntry> = Vec::new();
        for &g in gpus {
            let h = self.first_gpu.partition_point(|&first| first <= g) - 1;
            let host = &instance.hosts[h].name;
            match entries.iter_mut().find(|e| &e.host == host) {
                Some(e) => e.gpus.push(g - self.first_gpu[h]),
                None => entries.push(PlacementEntry { host: host.clone(), gpus: vec![g - self.first_gpu[h]] }),
            }
        }
        entries
    }

    /// Steps a running job has left at `now`, under step time `step`.
    pub fn steps_left(&self, job: usize, step: f64) -> f64 {
        match self.phase[job] {
            Phase::Running { progress_from, .. } => {
                (self.remaining[job] - (self.now - progress_from).max(0.0) / step).max(0.0)
            }
            Phase::Waiting => self.remaining[job],
            Phase::Done => 0.0,
        }
    }

    /// Adopts a plan for the waiting jobs (`plan` covers them, and running jobs it keeps).
    /// `job_index` maps the plan's job ids to indices; `options` gives each assignment's
    /// option index.
    pub fn adopt(&mut self, instance: &Instance, plan: &Plan, job_index: impl Fn(&str) -> usize, options: &[usize]) {
        for q in &mut self.queue {
            q.clear();
        }
        let mut order: Vec<usize> = (0..plan.assignments.len()).collect();
        order.sort_by(|&a, &b| plan.assignments[a].start_s.total_cmp(&plan.assignments[b].start_s));
        for a in order {
            let assignment = &plan.assignments[a];
            let job = job_index(&assignment.job);
            if self.phase[job] != Phase::Waiting {
                continue;
            }
            self.option[job] = options[a];
            self.gpus[job] = self.global_gpus(instance, &assignment.placement);
            for &g in &self.gpus[job] {
                self.queue[g as usize].push(job);
            }
        }
    }

    /// Stops a running job now (a re-plan moves it); its next start pays the switch cost.
    pub fn stop(&mut self, job: usize, step: f64) {
        self.remaining[job] = self.steps_left(job, step);
        self.phase[job] = Phase::Waiting;
        self.pays_switch[job] = true;
        for &g in &self.gpus[job] {
            self.busy[g as usize] = false;
        }
    }

    /// Runs until `until` (or until every job is done); `step(job, option)` is the real
    /// step time.
    pub fn run_until(&mut self, until: f64, step: &impl Fn(usize, usize) -> f64) {
        loop {
            self.start_ready(step);
            if self.all_done() {
                return;
            }
            let next_end = self
                .phase
                .iter()
                .filter_map(|p| if let Phase::Running { end, .. } = p { Some(*end) } else { None })
                .fold(f64::INFINITY, f64::min);
            let next_release = (0..self.phase.len())
                .filter(|&j| self.phase[j] == Phase::Waiting && self.release[j] > self.now)
                .map(|j| self.release[j])
                .fold(f64::INFINITY, f64::min);
            let next = next_end.min(next_release).min(until);
            if !next.is_finite() {
                return;
            }
            self.now = next;
            for j in 0..self.phase.len() {
                if matches!(self.phase[j], Phase::Running { end, .. } if end <= self.now) {
                    self.phase[j] = Phase::Done;
                    self.remaining[j] = 0.0;
                    for &g in &self.gpus[j] {
                        self.busy[g as usize] = false;
                    }
                }
            }
            if self.now >= until || self.all_done() {
                return;
            }
        }
    }

    /// True when every job has finished.
    pub fn all_done(&self) -> bool {
        self.phase.iter().all(|p| *p == Phase::Done)
    }

    /// Starts every job whose GPUs are idle and that is next in line on all of them.
    fn start_ready(&mut self, step: &impl Fn(usize, usize) -> f64) {
        loop {
            let ready = (0..self.phase.len()).find(|&j| {
                self.phase[j] == Phase::Waiting
                    && self.release[j] <= self.now
                    && !self.gpus[j].is_empty()
                    && self.gpus[j].iter().all(|&g| !self.busy[g as usize] && self.queue[g as usize].first() == Some(&j))
            });
            let Some(j) = ready else { return };
            let delay = if self.pays_switch[j] { self.switch_cost } else { 0.0 };
            self.pays_switch[j] = false;
            let progress_from = self.now + delay;
            let end = progress_from + self.remaining[j] * step(j, self.option[j]);
            self.phase[j] = Phase::Running { progress_from, end };
            for &g in &self.gpus[j] {
                self.busy[g as usize] = true;
                self.queue[g as usize].remove(0);
            }
        }
    }
}
