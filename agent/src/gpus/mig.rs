//! MIG instances of a GPU, which nvml-wrapper 0.11 does not enumerate.
//!
//! The two NVML calls needed are taken from `nvml-wrapper-sys` (the bindings nvml-wrapper
//! itself uses) and the handles they return are wrapped back into nvml-wrapper
//! [`Device`]s, so everything after enumeration is safe code. This is the only `unsafe`
//! in the agent; replace it with `Device::mig_device_by_index` on nvml-wrapper ≥ 0.13.

use nvml_wrapper::{Device, Nvml};
use nvml_wrapper_sys::bindings::{nvmlDevice_t, nvmlReturn_enum_NVML_SUCCESS, NvmlLib};

/// The same library nvml-wrapper opened; the dynamic loader hands back the already
/// loaded copy, with the NVML state `Nvml::init` set up.
const LIB_PATH: &str = "libnvidia-ml.so.1";

/// The MIG devices of `parent`, in NVML's order; empty when they cannot be listed.
pub(super) fn instances<'nvml>(nvml: &'nvml Nvml, parent: &Device<'nvml>) -> Vec<Device<'nvml>> {
    // SAFETY: loading the library runs no initialisation code of ours; NVML's own
    // initialisation already happened in `Nvml::init`, which holds the library open.
    let lib = match unsafe { NvmlLib::new(LIB_PATH) } {
        Ok(lib) => lib,
        Err(err) => {
            tracing::warn!(%err, "cannot reopen NVML to list MIG instances");
            return Vec::new();
        }
    };
    // Absent symbols (an old driver) mean no MIG support: nothing to list.
    let (Ok(max_count), Ok(by_index)) = (
        &lib.nvmlDeviceGetMaxMigDeviceCount,
        &lib.nvmlDeviceGetMigDeviceHandleByIndex,
    ) else {
        return Vec::new();
    };
    // SAFETY: `parent` is a live handle for as long as `nvml` is (its lifetime says so).
    let parent_handle = unsafe { parent.handle() };
    let mut count: u32 = 0;
    // SAFETY: NVML writes one u32 through the pointer, which is valid for the call.
    if unsafe { max_count(parent_handle, &mut count) } != nvmlReturn_enum_NVML_SUCCESS {
        return Vec::new();
    }
    let mut devices = Vec::new();
    for index in 0..count {
        let mut handle: nvmlDevice_t = std::ptr::null_mut();
        // SAFETY: as above, one handle written through a valid pointer. Slots without an
        // instance return NOT_FOUND and are skipped.
        if unsafe { by_index(parent_handle, index, &mut handle) } == nvmlReturn_enum_NVML_SUCCESS
            && !handle.is_null()
        {
            // SAFETY: NVML returned this handle for a MIG device of `parent`; it stays
            // valid while NVML is initialised, i.e. while `nvml` lives ('nvml).
            devices.push(unsafe { Device::new(handle, nvml) });
        }
    }
    devices
}
