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
}

impl DeviceType {
    pub const ALL: [DeviceType; 4] = [DeviceType::Private, DeviceType::Fsdax, DeviceType::Generic, DeviceType::P2pdma];

    pub const fn name(self) -> &'static str {
        match self {
            DeviceType::Private => "private",
            DeviceType::Fsdax => "fsdax",
            DeviceType::Generic => "generic",
            DeviceType::P2pdma => "p2pdma",
        }
    }

    /// The kernel's enumerator name.
    pub const fn kernel_name(self) -> &'static str {
        match self {
            DeviceType::Private => "MEMORY_DEVICE_PRIVATE",
            DeviceType::Fsdax => "MEMORY_DEVICE_FS_DAX",
            DeviceType::Generic => "MEMORY_DEVICE_GENERIC",
            DeviceType::P2pdma => "MEMORY_DEVICE_PCI_P2PDMA",
        }
    }

    /// The names of every type, in order (`zdfuzz.DEVICE_TYPES`).
    pub fn names() -> [&'static str; 4] {
        DeviceType::ALL.map(DeviceType::name)
    }

    pub fn from_name(s: &str) -> Option<DeviceType> {
        match s.to_ascii_lowercase().as_str() {
            "private" | "device_private" | "priv" => Some(DeviceType::Private),
            "fsdax" | "fs_dax" => Some(DeviceType::Fsdax),
            "generic" | "devdax" | "gen" => Some(DeviceType::Generic),
            "p2pdma" | "pci_p2pdma" | "p2p" => Some(DeviceType::P2pdma),
            _ => None,
        }
    }

    pub const fn index(self) -> usize {
        self as usize
    }
}
