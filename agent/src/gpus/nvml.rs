//! `--gpus auto`: the GPUs the NVIDIA driver reports, through NVML.

use nvml_wrapper::error::NvmlError;
use nvml_wrapper::{Device, Nvml};

use super::{mig, HostGpu};

const MIB: u64 = 1024 * 1024;
/// `nvmlDeviceGetMigMode`'s value for "MIG enabled" (`NVML_DEVICE_MIG_ENABLE`).
const MIG_ENABLED: u32 = 1;

/// Opens NVML and lists the GPUs. `Err` is the reason there are none, for one log
/// line: a host without an NVIDIA driver is normal, not a failure.
pub(super) fn discover() -> Result<Vec<HostGpu>, String> {
    let nvml = Nvml::init().map_err(|err| describe_init_error(&err))?;
    let count = nvml
        .device_count()
        .map_err(|err| format!("NVML could not count the GPUs: {err}"))?;
    let mut gpus = Vec::new();
    let mut mig_instances = Vec::new();
    for index in 0..count {
        let device = match nvml.device_by_index(index) {
            Ok(device) => device,
            Err(err) => {
                tracing::warn!(index, %err, "skipping a GPU that NVML cannot open");
                continue;
            }
        };
        if device
            .mig_mode()
            .is_ok_and(|mode| mode.current == MIG_ENABLED)
        {
            // A GPU in MIG mode is offered as its instances: CUDA sees those, not it.
            mig_instances.extend(
                mig::instances(&nvml, &device)
                    .into_iter()
                    .filter_map(|d| describe(&d, 0).ok()),
            );
        } else {
            match describe(&device, index) {
                Ok(gpu) => gpus.push(gpu),
                Err(err) => {
                    tracing::warn!(index, %err, "skipping a GPU whose identity NVML cannot read")
                }
            }
        }
    }
    // MIG instances are numbered after every whole GPU, so a whole GPU's index stays
    // its NVML index.
    for (offset, mut instance) in mig_instances.into_iter().enumerate() {
        instance.index = count + offset as u32;
        gpus.push(instance);
    }
    Ok(gpus)
}

fn describe(device: &Device<'_>, index: u32) -> Result<HostGpu, NvmlError> {
    Ok(HostGpu {
        index,
        uuid: device.uuid()?,
        model: device.name()?,
        memory_mib: device.memory_info()?.total / MIB,
        simulated: false,
    })
}

/// Why NVML would not start, in words for an operator.
fn describe_init_error(err: &NvmlError) -> String {
    match err {
        NvmlError::LibloadingError(_) | NvmlError::LibraryNotFound => {
            "no NVIDIA driver library (libnvidia-ml.so.1) on this host".into()
        }
        NvmlError::DriverNotLoaded => "the NVIDIA driver is not loaded".into(),
        NvmlError::NoPermission => "no permission to talk to the NVIDIA driver".into(),
        other => format!("NVML failed to start: {other}"),
    }
}
