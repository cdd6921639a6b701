//! `/proc/cpuinfo`: CPU model, physical core count and logical CPU count.
//!
//! Physical cores are the distinct `(physical id, core id)` pairs: with SMT
//! two logical CPUs share a pair, and core ids restart on every socket, so
//! neither field alone is enough. Architectures whose cpuinfo has no core ids
//! (most ARM kernels) report `None` and the caller asks sysinfo instead.

use std::collections::BTreeSet;
use std::path::Path;

use super::InventoryError;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuInfo {
    pub model: Option<String>,
    /// `None` when cpuinfo does not say which core each CPU belongs to.
    pub physical_cores: Option<usize>,
    /// Number of `processor` entries; 0 if there were none.
    pub logical_cpus: usize,
}

pub fn read(root: &Path) -> Result<CpuInfo, InventoryError> {
    let path = root.join("proc/cpuinfo");
    let text =
        std::fs::read_to_string(&path).map_err(|source| InventoryError::Read { path, source })?;
    Ok(parse_cpuinfo(&text))
}

pub fn parse_cpuinfo(text: &str) -> CpuInfo {
    let mut model = None;
    let mut logical_cpus = 0;
    let mut cores = BTreeSet::new();
    let mut every_cpu_has_a_core_id = true;
    // The (physical id, core id) of the processor block being read.
    let mut current: Option<(Option<String>, Option<String>)> = None;
    let mut finish = |block: Option<(Option<String>, Option<String>)>| {
        if let Some((package, core)) = block {
            match core {
                Some(core) => {
                    cores.insert((package.unwrap_or_default(), core));
                }
                None => every_cpu_has_a_core_id = false,
            }
        }
    };

    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        match key {
            // ARM kernels also print "Processor : AArch64 ..." (capital P, not
            // a number); only numbered entries are CPUs.
            "processor" if value.parse::<u32>().is_ok() => {
                finish(current.take());
                logical_cpus += 1;
                current = Some((None, None));
            }
            "physical id" => {
                if let Some((package, _)) = current.as_mut() {
                    *package = Some(value.to_string());
                }
            }
            "core id" => {
                if let Some((_, core)) = current.as_mut() {
                    *core = Some(value.to_string());
                }
            }
            // x86 and most others say "model name"; MIPS "cpu model";
            // PowerPC "cpu".
            "model name" | "cpu model" | "cpu" if model.is_none() && !value.is_empty() => {
                model = Some(value.to_string());
            }
            _ => {}
        }
    }
    finish(current.take());

    let physical_cores = (every_cpu_has_a_core_id && !cores.is_empty()).then_some(cores.len());
    CpuInfo {
        model,
        physical_cores,
        logical_cpus,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixtures() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/inventory")
    }

    #[test]
    fn reads_this_machines_cpuinfo() {
        let text = std::fs::read_to_string(fixtures().join("cpuinfo/amd-epyc-2vcpu")).unwrap();
        assert_eq!(
            parse_cpuinfo(&text),
            CpuInfo {
                model: Some("AMD EPYC".into()),
                physical_cores: Some(2),
                logical_cpus: 2,
            }
        );
    }

    #[test]
    fn reads_cpuinfo_under_a_root() {
        let info = read(&fixtures().join("root")).unwrap();
        assert_eq!(info.logical_cpus, 2);
    }

    #[test]
    fn counts_hyperthreads_once_and_core_ids_per_socket() {
        // Two sockets, two cores each, two threads per core: core ids 0 and 1
        // repeat on both sockets.
        let mut text = String::new();
        let mut n = 0;
        for socket in 0..2 {
            for _thread in 0..2 {
                for core in 0..2 {
                    text.push_str(&format!(
                        "processor\t: {n}\nmodel name\t: Intel(R) Xeon(R) Gold 6130 CPU @ 2.10GHz\n\
                         physical id\t: {socket}\ncore id\t\t: {core}\n\n"
                    ));
                    n += 1;
                }
            }
        }
        let info = parse_cpuinfo(&text);
        assert_eq!(info.logical_cpus, 8);
        assert_eq!(info.physical_cores, Some(4));
        assert_eq!(
            info.model.as_deref(),
            Some("Intel(R) Xeon(R) Gold 6130 CPU @ 2.10GHz")
        );
    }

    #[test]
    fn arm_cpuinfo_without_core_ids_leaves_physical_cores_unknown() {
        // The shape of a Raspberry Pi 4 (arm64 kernel): no model name, no
        // core id, a non-numeric "Processor"-like header on older kernels.
        let text = "Processor\t: AArch64 Processor rev 3 (aarch64)\n\
                    processor\t: 0\nBogoMIPS\t: 108.00\nCPU part\t: 0xd08\n\n\
                    processor\t: 1\nBogoMIPS\t: 108.00\nCPU part\t: 0xd08\n\n\
                    Hardware\t: BCM2835\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n";
        assert_eq!(
            parse_cpuinfo(text),
            CpuInfo {
                model: None,
                physical_cores: None,
                logical_cpus: 2,
            }
        );
    }

    #[test]
    fn empty_cpuinfo_knows_nothing() {
        assert_eq!(parse_cpuinfo(""), CpuInfo::default());
    }
}
