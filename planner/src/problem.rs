//! The instance compiled for solving, and the checks that make compiling safe.
//!
//! Validation and compilation are one pass on purpose: every assumption the solvers make
//! (an option fits somewhere, GPU indices exist, running jobs do not overlap) is checked
//! exactly where the index structures relying on it are built.

use std::collections::HashMap;

use crate::error::InstanceError;
use crate::instance::{Instance, Job, JobOption};

/// A way to run one job: an option, and for a running job possibly "stay where you are".
#[derive(Debug, Clone)]
pub(crate) struct Mode {
    /// Index into the job's `options`.
    pub option: usize,
    /// Seconds from start to end, switch cost included where it applies.
    pub runtime: f64,
    /// Distinct hosts in the gang.
    pub hosts: u32,
    /// GPUs on each host.
    pub per_host: u32,
    /// Index into [`Problem::eligible`]: the hosts this mode may use.
    pub eligible: usize,
    /// Global GPU ids when the mode keeps a running job where it is.
    pub fixed: Option<Vec<u32>>,
}

impl Mode {
    /// GPU-seconds the mode occupies.
    pub fn area(&self) -> f64 {
        self.runtime * f64::from(self.hosts * self.per_host)
    }
}

/// A job as the solvers see it.
#[derive(Debug, Clone)]
pub(crate) struct JobInfo {
    /// Earliest start.
    pub release: f64,
    /// Every option as a mode, plus the "keep" mode for running jobs (always last).
    pub modes: Vec<Mode>,
}

/// A host as the solvers see it.
#[derive(Debug, Clone)]
pub(crate) struct HostInfo {
    /// Global id of its GPU 0; its GPUs are `first_gpu..first_gpu + gpus`.
    pub first_gpu: u32,
    /// GPU count.
    pub gpus: u32,
    /// Index into [`Problem::models`].
    pub model: usize,
}

/// The compiled instance.
#[derive(Debug, Clone)]
pub(crate) struct Problem {
    pub hosts: Vec<HostInfo>,
    pub jobs: Vec<JobInfo>,
    /// Distinct host GPU models (`None` = unnamed).
    pub models: Vec<Option<String>>,
    /// Host lists, shared between modes with the same model and GPUs-per-host need.
    pub eligible: Vec<Vec<u32>>,
    /// Host of each global GPU id.
    pub gpu_host: Vec<u32>,
}

impl Problem {
    /// Total GPU count.
    pub fn gpu_count(&self) -> usize {
        self.gpu_host.len()
    }
}

impl Instance {
    /// Checks the instance; the error names the job or host at fault.
    pub fn validate(&self) -> Result<(), InstanceError> {
        compile(self).map(|_| ())
    }
}

/// Validates and compiles an instance.
pub(crate) fn compile(instance: &Instance) -> Result<Problem, InstanceError> {
    if instance.hosts.is_empty() {
        return Err(InstanceError::NoHosts);
    }
    number("the instance", "switch_cost_s", instance.switch_cost_s)?;
    let mut models: Vec<Option<String>> = Vec::new();
    let mut hosts = Vec::with_capacity(instance.hosts.len());
    let mut host_index = HashMap::new();
    let mut gpu_host = Vec::new();
    for (i, host) in instance.hosts.iter().enumerate() {
        if host.name.is_empty() {
            return Err(InstanceError::EmptyName { item: format!("hosts[{i}]") });
        }
        if host_index.insert(host.name.as_str(), i).is_some() {
            return Err(InstanceError::DuplicateHost { host: host.name.clone() });
        }
        let model = match models.iter().position(|m| *m == host.gpu_model) {
            Some(m) => m,
            None => {
                models.push(host.gpu_model.clone());
                models.len() - 1
            }
        };
        hosts.push(HostInfo { first_gpu: gpu_host.len() as u32, gpus: host.gpus, model });
        gpu_host.extend(std::iter::repeat_n(i as u32, host.gpus as usize));
    }
    let mut problem = Problem { hosts, jobs: Vec::new(), models, eligible: Vec::new(), gpu_host };
    let mut eligible_index: HashMap<(Option<String>, u32), usize> = HashMap::new();
    let mut job_ids = HashMap::new();
    let mut gpu_owner: HashMap<u32, usize> = HashMap::new();
    for (j, job) in instance.jobs.iter().enumerate() {
        if job.id.is_empty() {
            return Err(InstanceError::EmptyName { item: format!("jobs[{j}]") });
        }
        if job_ids.insert(job.id.as_str(), j).is_some() {
            return Err(InstanceError::DuplicateJob { job: job.id.clone() });
        }
        let info = compile_job(instance, job, &mut problem, &mut eligible_index, &host_index)?;
        if let Some(fixed) = info.modes.last().and_then(|m| m.fixed.as_ref()) {
            for &gpu in fixed {
                if let Some(other) = gpu_owner.insert(gpu, j) {
                    let host = &instance.hosts[problem.gpu_host[gpu as usize] as usize];
                    let local = gpu - problem.hosts[problem.gpu_host[gpu as usize] as usize].first_gpu;
                    return Err(InstanceError::RunningOverlap {
                        job: instance.jobs[other].id.clone(),
                        other: job.id.clone(),
                        host: host.name.clone(),
                        gpu: local,
                    });
                }
            }
        }
        problem.jobs.push(info);
    }
    Ok(problem)
}

fn compile_job(
    instance: &Instance,
    job: &Job,
    problem: &mut Problem,
    eligible_index: &mut HashMap<(Option<String>, u32), usize>,
    host_index: &HashMap<&str, usize>,
) -> Result<JobInfo, InstanceError> {
    let label = format!("job \"{}\"", job.id);
    number(&label, "release_s", job.release_s)?;
    if job.options.is_empty() {
        return Err(InstanceError::NoOptions { job: job.id.clone() });
    }
    let switch = if job.running.is_some() { instance.switch_cost_s } else { 0.0 };
    let mut modes = Vec::with_capacity(job.options.len() + 1);
    for (o, option) in job.options.iter().enumerate() {
        let item = format!("{label} option {o}");
        number(&item, "step_time_s", option.step_time_s)?;
        positive(&item, "gpus_per_host", option.gpus_per_host)?;
        positive(&item, "hosts", option.hosts)?;
        let runtime = option.runtime_s(job.steps) + switch;
        if !runtime.is_finite() {
            return Err(InstanceError::BadNumber {
                item,
                field: "step_time_s",
                value: option.step_time_s,
                rule: "steps x step_time_s overflows",
            });
        }
        let key = (option.gpu_model.clone(), option.gpus_per_host);
        let eligible = *eligible_index.entry(key).or_insert_with(|| {
            let hosts = instance
                .hosts
                .iter()
                .enumerate()
                .filter(|(_, h)| fits_host(option, h.gpus, h.gpu_model.as_deref()))
                .map(|(i, _)| i as u32)
                .collect();
            problem.eligible.push(hosts);
            problem.eligible.len() - 1
        });
        let available = problem.eligible[eligible].len();
        if available < option.hosts as usize {
            return Err(InstanceError::OptionFitsNoHost {
                job: job.id.clone(),
                option: o,
                shape: describe_option(option),
                why: format!(
                    "needs {} host(s){} with at least {} GPUs, the instance has {available}",
                    option.hosts,
                    option.gpu_model.as_deref().map(|m| format!(" of model {m}")).unwrap_or_default(),
                    option.gpus_per_host
                ),
            });
        }
        modes.push(Mode {
            option: o,
            runtime,
            hosts: option.hosts,
            per_host: option.gpus_per_host,
            eligible,
            fixed: None,
        });
    }
    if let Some(running) = &job.running {
        modes.push(kept_mode(instance, job, running, &modes, problem, host_index)?);
    }
    Ok(JobInfo { release: job.release_s, modes })
}

/// The mode that leaves a running job where it is, at no switch cost.
fn kept_mode(
    instance: &Instance,
    job: &Job,
    running: &crate::instance::Running,
    modes: &[Mode],
    problem: &Problem,
    host_index: &HashMap<&str, usize>,
) -> Result<Mode, InstanceError> {
    let bad = |why: String| InstanceError::BadRunning { job: job.id.clone(), why };
    if running.placement.is_empty() {
        return Err(bad("it names no host".into()));
    }
    let mut gpus = Vec::new();
    let mut models = Vec::new();
    for entry in &running.placement {
        let &h = host_index
            .get(entry.host.as_str())
            .ok_or_else(|| bad(format!("host \"{}\" is not in `hosts`", entry.host)))?;
        if running.placement.iter().filter(|e| e.host == entry.host).count() > 1 {
            return Err(bad(format!("host \"{}\" appears twice", entry.host)));
        }
        let host = &problem.hosts[h];
        for (k, &gpu) in entry.gpus.iter().enumerate() {
            if gpu >= host.gpus {
                return Err(bad(format!(
                    "host \"{}\" has {} GPUs, there is no GPU {gpu}",
                    entry.host, host.gpus
                )));
            }
            if entry.gpus[..k].contains(&gpu) {
                return Err(bad(format!("GPU {gpu} of host \"{}\" appears twice", entry.host)));
            }
            gpus.push(host.first_gpu + gpu);
        }
        models.push(instance.hosts[h].gpu_model.as_deref());
    }
    let per_host = running.placement[0].gpus.len() as u32;
    let matching = job.options.iter().enumerate().filter(|(_, o)| {
        o.technique == running.technique
            && o.hosts as usize == running.placement.len()
            && running.placement.iter().all(|e| e.gpus.len() as u32 == o.gpus_per_host)
            && models.iter().all(|m| o.gpu_model.is_none() || o.gpu_model.as_deref() == *m)
    });
    let best = matching
        .min_by(|a, b| a.1.step_time_s.total_cmp(&b.1.step_time_s))
        .ok_or_else(|| bad(format!("technique \"{}\" on these GPUs matches none of its options", running.technique)))?;
    Ok(Mode {
        option: best.0,
        runtime: best.1.runtime_s(job.steps),
        hosts: running.placement.len() as u32,
        per_host,
        eligible: modes[best.0].eligible,
        fixed: Some(gpus),
    })
}

/// True when one host of this size and model can hold the option's per-host share.
pub(crate) fn fits_host(option: &JobOption, gpus: u32, model: Option<&str>) -> bool {
    gpus >= option.gpus_per_host
        && option.gpu_model.as_deref().is_none_or(|wanted| model == Some(wanted))
}

/// `ddp, 4 GPUs x 2 hosts, model V100`.
pub(crate) fn describe_option(option: &JobOption) -> String {
    let model = option.gpu_model.as_deref().map(|m| format!(", model {m}")).unwrap_or_default();
    format!("{}, {} GPUs x {} host(s){model}", option.technique, option.gpus_per_host, option.hosts)
}

fn number(item: &str, field: &'static str, value: f64) -> Result<(), InstanceError> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(InstanceError::BadNumber {
            item: item.to_string(),
            field,
            value,
            rule: "must be a finite number >= 0",
        })
    }
}

fn positive(item: &str, field: &'static str, value: u32) -> Result<(), InstanceError> {
    if value > 0 {
        Ok(())
    } else {
        Err(InstanceError::BadNumber {
            item: item.to_string(),
            field,
            value: 0.0,
            rule: "must be at least 1",
        })
    }
}
