//! `--gpus auto` on a host without an NVIDIA driver (like CI): no GPUs, a reason to log,
//! no panic. On a host with a driver it lists real GPUs, none of them simulated.

use saturn_agent::gpus::{GpuInventory, GpuSpec};

#[test]
fn auto_discovery_never_panics_and_explains_an_empty_result() {
    let inventory = GpuInventory::discover(&GpuSpec::Auto);
    if inventory.gpus().is_empty() {
        let reason = inventory
            .none_found_reason()
            .expect("an empty auto discovery says why");
        assert!(!reason.is_empty());
        eprintln!("no GPU found: {reason}");
    } else {
        assert!(inventory
            .gpus()
            .iter()
            .all(|gpu| !gpu.simulated && gpu.memory_mib > 0));
        eprintln!("found: {:#?}", inventory.gpus());
    }
}
