//! The ZONE_DEVICE memory types (`enum memory_type` in include/linux/memremap.h).
//!
//! A type is a property of the machine's shape and of each pgmap, not of a
//! kernel era: the oracle and the layout name types without reading the
//! rules.

use serde::{Deserialize, Serialize};

/// The ZONE_DEVICE memory types modelled (`enum memory_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceType {
    /// MEMORY_DEVICE_PRIVATE: device memory the CPU cannot address (HMM).
    Private,
    /// MEMORY_DEVICE_FS_DAX: persistent memory under a DAX filesystem.
    Fsdax,
    /// MEMORY_DEVICE_GENERIC: device-dax (/dev/daxX.Y).
    Generic,
    /// MEMORY_DEVICE_PCI_P2PDMA: PCI BAR memory for peer-to-peer DMA.
    P2pdma,
    /// MEMORY_DEVICE_COHERENT (v6.0, "mm: add zone device coherent type memory
    /// support", Alex Sierra, 2022): device memory the CPU
    /// addresses coherently (AMD MI200 under amdkfd, test_hmm's coherent
    /// mode). Allocated and freed by the driver like device-private pages,
    /// but mapped by ordinary present PTEs, so the CPU and GUP reach it;
    /// never pinned for long (GUP migrates it to system RAM first).
    Coherent,
}

impl DeviceType {
    /// Every type, in the order of their indices (bit `i` of a type set is
    /// `ALL[i]`).
    pub const ALL: [DeviceType; 5] =
        [DeviceType::Private, DeviceType::Fsdax, DeviceType::Generic, DeviceType::P2pdma, DeviceType::Coherent];

    /// The types a shape has when none are named: the four every era has.
    /// MEMORY_DEVICE_COHERENT exists only from v6.0 (the `e3` era on), so it
    /// is asked for by name (`--types private,coherent`): the default shape
    /// then means the same machine under every preset, and every figure
    /// measured on it stays comparable across eras.
    pub const DEFAULT: [DeviceType; 4] =
        [DeviceType::Private, DeviceType::Fsdax, DeviceType::Generic, DeviceType::P2pdma];

    pub const fn name(self) -> &'static str {
        match self {
            DeviceType::Private => "private",
            DeviceType::Fsdax => "fsdax",
            DeviceType::Generic => "generic",
            DeviceType::P2pdma => "p2pdma",
            DeviceType::Coherent => "coherent",
        }
    }

    /// The kernel's enumerator name.
    pub const fn kernel_name(self) -> &'static str {
        match self {
            DeviceType::Private => "MEMORY_DEVICE_PRIVATE",
            DeviceType::Fsdax => "MEMORY_DEVICE_FS_DAX",
            DeviceType::Generic => "MEMORY_DEVICE_GENERIC",
            DeviceType::P2pdma => "MEMORY_DEVICE_PCI_P2PDMA",
            DeviceType::Coherent => "MEMORY_DEVICE_COHERENT",
        }
    }

    /// The names of every type, in order (`zdfuzz.DEVICE_TYPES`).
    pub fn names() -> [&'static str; 5] {
        DeviceType::ALL.map(DeviceType::name)
    }

    pub fn from_name(s: &str) -> Option<DeviceType> {
        match s.to_ascii_lowercase().as_str() {
            "private" | "device_private" | "priv" => Some(DeviceType::Private),
            "fsdax" | "fs_dax" => Some(DeviceType::Fsdax),
            "generic" | "devdax" | "gen" => Some(DeviceType::Generic),
            "p2pdma" | "pci_p2pdma" | "p2p" => Some(DeviceType::P2pdma),
            "coherent" | "device_coherent" | "coh" => Some(DeviceType::Coherent),
            _ => None,
        }
    }

    pub const fn index(self) -> usize {
        self as usize
    }

    /// Pages the driver hands out and takes back itself
    /// (`zone_device_page_init`, `->page_free`): MEMORY_DEVICE_PRIVATE and
    /// MEMORY_DEVICE_COHERENT, which share that code in every era that has
    /// both (mm/memremap.c tests `type == PRIVATE || type == COHERENT`).
    pub const fn driver_allocated(self) -> bool {
        matches!(self, DeviceType::Private | DeviceType::Coherent)
    }
}
