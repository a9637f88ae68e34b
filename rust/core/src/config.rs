//! The shape of a machine: which device types, how many pgmaps, pages, CPUs,
//! processes, address slots and DAX files — and the derived layout (which
//! pfns belong to which pgmap, which files to which filesystem).
//!
//! pfns are global indices: pgmap `g` covers `g*pages .. (g+1)*pages`.
//! Pgmaps are listed type by type in the order the types were given.
//! Each FS-DAX pgmap carries one filesystem with `files` files of
//! `file_pages` entries; file ids count across FS-DAX filesystems.

use crate::rules::{DeviceType, Rules};
use std::fmt;
use std::sync::Arc;

/// Upper bounds (keep operands in a byte and the state small).
pub const MAX_CPUS: usize = 8;
pub const MAX_PGMAPS: usize = 16;
pub const MAX_PAGES: usize = 1024;
pub const MAX_PROCS: usize = 4;
pub const MAX_ADDRS: usize = 1024;
/// System RAM pages (the other end of device-private migration).
pub const MAX_RAM: usize = 1024;
/// Largest folio order: PMD order on x86-64 (`HPAGE_PMD_ORDER`).
pub const MAX_ORDER: usize = 9;
pub const MAX_FILES: usize = 4;
pub const MAX_FILE_PAGES: usize = 8;
pub const MAX_TASKS: usize = 8;
/// Largest multi-page P2P allocation / mmap an action asks for.
pub const MAX_ALLOC_PAGES: usize = 4;

/// The machine shape: how many of everything. Programs carry one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shape {
    /// Device types present, distinct, in this order.
    pub types: Vec<DeviceType>,
    /// pgmaps per type.
    pub pgmaps: usize,
    /// pages per pgmap.
    pub pages: usize,
    pub cpus: usize,
    /// process slots (all alive at start; `fork` refills an exited slot).
    pub procs: usize,
    /// virtual page slots per process.
    pub addrs: usize,
    /// files per FS-DAX filesystem.
    pub files: usize,
    /// entries (page-sized offsets) per file.
    pub file_pages: usize,
    /// concurrent kernel tasks (memunmap_pages, truncate, get_dev_pagemap,
    /// migrations, device-private faults).
    pub tasks: usize,
    /// pages of system RAM (anonymous memory, migration to and from
    /// device-private memory).
    pub ram: usize,
    /// order of a transparent huge page / large device-private folio; a PMD
    /// maps `1 << order` address slots. Small by default so fuzzing stays
    /// fast; 9 is the x86-64 PMD order.
    pub order: usize,
    /// 1: the program may make kernel calls fail (`fail_next`: a
    /// `vm_insert_page` / `vmf_insert_*` or GUP's `try_grab_folio` returns an
    /// error), so the error paths run. 0 (the default): nothing fails, and
    /// the state space is exactly that of a shape without failure injection.
    pub faults: usize,
    /// 1: device-dax devices are aligned to a PMD (`daxctl reconfigure-device
    /// --align 2M`, the default of a devdax namespace): `dev_dax_huge_fault`
    /// maps `1 << order` pages with one PMD, and from v5.17 the pages are
    /// compound folios of that order (`pgmap->vmemmap_shift`). 0 (the
    /// default): 4 KiB alignment, PTE mappings of order-0 pages, and the
    /// state space of a shape without it.
    pub devdax_pmd: usize,
    /// 1: FS-DAX filesystems map PMD-sized extents (an XFS with 2 MiB stripe
    /// alignment): every DAX entry is a PMD entry of `1 << order` pages,
    /// `dax_iomap_fault` maps it with one PMD, and from v6.15 its pages are
    /// a compound folio while the entry holds them (`dax_folio_init`). 0 (the
    /// default): PTE entries of order-0 pages, and the state space of a
    /// shape without it.
    pub fsdax_pmd: usize,
}

impl Default for Shape {
    /// All four types, one pgmap each, 4 pages, 2 CPUs, 2 processes with 4
    /// address slots, 2 files of 2 pages per filesystem, 4 task slots, 4
    /// pages of system RAM, order-1 (two-page) huge pages.
    fn default() -> Shape {
        Shape {
            types: DeviceType::DEFAULT.to_vec(),
            pgmaps: 1,
            pages: 4,
            cpus: 2,
            procs: 2,
            addrs: 4,
            files: 2,
            file_pages: 2,
            tasks: 4,
            ram: 4,
            order: 1,
            faults: 0,
            devdax_pmd: 0,
            fsdax_pmd: 0,
        }
    }
}

impl Shape {
    /// System RAM and huge pages exist for device-private migration (and
    /// anonymous memory around it): a shape without MEMORY_DEVICE_PRIVATE
    /// gets none unless asked, so the other types' searches are not diluted.
    pub fn default_ram(types: &[DeviceType]) -> usize {
        if types.iter().any(|t| t.driver_allocated()) {
            Shape::default().ram
        } else {
            0
        }
    }

    /// See [`Shape::default_ram`].
    pub fn default_order(types: &[DeviceType]) -> usize {
        if types.contains(&DeviceType::Private) {
            Shape::default().order
        } else {
            0
        }
    }

    /// Give `ram` and `order` their defaults for these types where they were
    /// not set explicitly.
    pub fn apply_memory_defaults(&mut self, ram_set: bool, order_set: bool) {
        if !ram_set {
            self.ram = Shape::default_ram(&self.types);
        }
        if !order_set {
            self.order = Shape::default_order(&self.types);
            if (self.devdax_pmd != 0 || self.fsdax_pmd != 0) && self.order == 0 {
                // a PMD-aligned device-dax device or FS-DAX extent needs huge pages
                self.order = Shape::default().order;
            }
        }
    }

    /// (name, value) pairs of the numeric fields, in the text header's order.
    pub fn fields(&self) -> [(&'static str, usize); 10] {
        [
            ("pgmaps", self.pgmaps),
            ("pages", self.pages),
            ("cpus", self.cpus),
            ("procs", self.procs),
            ("addrs", self.addrs),
            ("files", self.files),
            ("file_pages", self.file_pages),
            ("tasks", self.tasks),
            ("ram", self.ram),
            ("order", self.order),
        ]
    }

    /// The fields a program header writes: [`Shape::fields`], then `faults`
    /// only when failure injection is on (so every program written before it
    /// existed reads and writes unchanged).
    pub fn header_fields(&self) -> Vec<(&'static str, usize)> {
        let mut v = self.fields().to_vec();
        if self.faults != 0 {
            v.push(("faults", self.faults));
        }
        if self.devdax_pmd != 0 {
            v.push(("devdax_pmd", self.devdax_pmd));
        }
        if self.fsdax_pmd != 0 {
            v.push(("fsdax_pmd", self.fsdax_pmd));
        }
        v
    }

    /// Set a numeric field by name; false if there is no such field.
    pub fn set(&mut self, name: &str, v: usize) -> bool {
        match name {
            "pgmaps" => self.pgmaps = v,
            "pages" => self.pages = v,
            "cpus" => self.cpus = v,
            "procs" => self.procs = v,
            "addrs" => self.addrs = v,
            "files" => self.files = v,
            "file_pages" => self.file_pages = v,
            "tasks" => self.tasks = v,
            "ram" => self.ram = v,
            "order" => self.order = v,
            "faults" => self.faults = v,
            "devdax_pmd" => self.devdax_pmd = v,
            "fsdax_pmd" => self.fsdax_pmd = v,
            _ => return false,
        }
        true
    }

    /// A shape from its parts as a front end has them: device type names
    /// (None: all four), numeric fields by name, and `ram` / `order` when
    /// given (else the defaults for these types, see [`Shape::default_ram`]).
    /// Validated.
    pub fn build(
        types: Option<&[String]>,
        fields: &[(&str, usize)],
        ram: Option<usize>,
        order: Option<usize>,
    ) -> Result<Shape, ConfigError> {
        let mut shape = Shape::default();
        if let Some(types) = types {
            shape.types = types
                .iter()
                .map(|t| {
                    DeviceType::from_name(t).ok_or_else(|| {
                        ConfigError(format!("unknown device type {t:?}; types: {}", DeviceType::names().join(", ")))
                    })
                })
                .collect::<Result<_, _>>()?;
        }
        for &(k, v) in fields {
            if matches!(k, "ram" | "order") || !shape.set(k, v) {
                return Err(ConfigError(format!(
                    "unknown shape field `{k}` (types, {})",
                    Shape::default().fields().map(|(n, _)| n).join(", ")
                )));
            }
        }
        shape.apply_memory_defaults(ram.is_some(), order.is_some());
        if let Some(v) = ram {
            shape.ram = v;
        }
        if let Some(v) = order {
            shape.order = v;
        }
        shape.validate()?;
        Ok(shape)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let range = |name: &str, v: usize, lo: usize, hi: usize| {
            if v < lo || v > hi {
                Err(ConfigError(format!("{name} must be between {lo} and {hi}, got {v}")))
            } else {
                Ok(())
            }
        };
        if self.types.is_empty() {
            return Err(ConfigError("at least one device type is needed".into()));
        }
        for (i, t) in self.types.iter().enumerate() {
            if self.types[..i].contains(t) {
                return Err(ConfigError(format!("device type {:?} given twice", t.name())));
            }
        }
        range("pgmaps (per type)", self.pgmaps, 1, MAX_PGMAPS / self.types.len())?;
        range("pages (per pgmap)", self.pages, 1, MAX_PAGES)?;
        range("cpus", self.cpus, 1, MAX_CPUS)?;
        range("procs", self.procs, 1, MAX_PROCS)?;
        range("addrs", self.addrs, 1, MAX_ADDRS)?;
        range("files", self.files, 1, MAX_FILES)?;
        range("file_pages", self.file_pages, 1, MAX_FILE_PAGES)?;
        range("tasks", self.tasks, 1, MAX_TASKS)?;
        range("ram", self.ram, 0, MAX_RAM)?;
        range("order", self.order, 0, MAX_ORDER)?;
        range("faults", self.faults, 0, 1)?;
        range("devdax_pmd", self.devdax_pmd, 0, 1)?;
        range("fsdax_pmd", self.fsdax_pmd, 0, 1)?;
        for (name, on, ty, what) in [
            ("devdax_pmd", self.devdax_pmd, DeviceType::Generic, "the generic (device-dax) type"),
            ("fsdax_pmd", self.fsdax_pmd, DeviceType::Fsdax, "the fsdax type"),
        ] {
            if on == 0 {
                continue;
            }
            let nr = 1usize << self.order;
            if !self.types.contains(&ty) {
                return Err(ConfigError(format!("{name}=1 needs {what}")));
            }
            if self.order == 0 || self.addrs < nr {
                return Err(ConfigError(format!(
                    "{name}=1 needs huge pages that fit a process: order >= 1 and addrs >= 1 << order (order={}, \
                     addrs={})",
                    self.order, self.addrs
                )));
            }
            if self.pages % nr != 0 {
                return Err(ConfigError(format!(
                    "{name}=1 needs whole folios: pages per pgmap ({}) must be a multiple of 1 << order ({nr})",
                    self.pages
                )));
            }
        }
        Ok(())
    }
}

/// Rules plus shape: everything a [`Machine`](crate::machine::Machine) needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub rules: Arc<Rules>,
    pub shape: Shape,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// The default shape under `rules`.
    pub fn new(rules: Rules) -> Config {
        Config { rules: Arc::new(rules), shape: Shape::default() }
    }

    pub fn with_shape(rules: Rules, shape: Shape) -> Config {
        Config { rules: Arc::new(rules), shape }
    }

    /// A shape from its parts as a front end has them: device type names
    /// (None: all four), numeric fields by name, and `ram` / `order` when
    /// given (else the defaults for these types, see [`Shape::default_ram`]).
    /// Validated.
    pub fn build(
        types: Option<&[String]>,
        fields: &[(&str, usize)],
        ram: Option<usize>,
        order: Option<usize>,
    ) -> Result<Shape, ConfigError> {
        let mut shape = Shape::default();
        if let Some(types) = types {
            shape.types = types
                .iter()
                .map(|t| {
                    DeviceType::from_name(t).ok_or_else(|| {
                        ConfigError(format!("unknown device type {t:?}; types: {}", DeviceType::names().join(", ")))
                    })
                })
                .collect::<Result<_, _>>()?;
        }
        for &(k, v) in fields {
            if matches!(k, "ram" | "order") || !shape.set(k, v) {
                return Err(ConfigError(format!(
                    "unknown shape field `{k}` (types, {})",
                    Shape::default().fields().map(|(n, _)| n).join(", ")
                )));
            }
        }
        shape.apply_memory_defaults(ram.is_some(), order.is_some());
        if let Some(v) = ram {
            shape.ram = v;
        }
        if let Some(v) = order {
            shape.order = v;
        }
        shape.validate()?;
        Ok(shape)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.shape.validate()?;
        self.rules.check_types(&self.shape.types).map_err(ConfigError)
    }
}

/// Derived layout; cheap lookups on the hot path.
#[derive(Clone, Debug)]
pub struct Layout {
    pub npgmaps: usize,
    pub pages: usize,
    /// device pfns: `0 .. ndev`
    pub ndev: usize,
    /// every pfn: device pfns, then system RAM `ndev .. npfns`
    pub npfns: usize,
    /// folio order of huge pages; `1 << order` pages per huge folio and
    /// address slots per PMD
    pub order: usize,
    /// PMD blocks per process (`addrs >> order`; 0 when a PMD does not fit)
    pub blocks: usize,
    pub cpus: usize,
    pub procs: usize,
    pub addrs: usize,
    pub tasks: usize,
    pub files_per_fs: usize,
    pub file_pages: usize,
    /// type of each pgmap
    pub pgmap_type: Vec<DeviceType>,
    /// FS-DAX pgmaps in order: filesystem k lives on pgmap `fs_pgmap[k]`
    pub fs_pgmap: Vec<u8>,
    pub nfiles: usize,
    /// failure injection is on (`fail_next` can be enabled)
    pub faults: bool,
    /// device-dax devices are PMD-aligned (`Shape::devdax_pmd`)
    pub devdax_pmd: bool,
    /// FS-DAX entries are PMD entries (`Shape::fsdax_pmd`)
    pub fsdax_pmd: bool,
}

impl Layout {
    pub fn new(c: &Shape) -> Layout {
        let mut pgmap_type = Vec::new();
        for t in &c.types {
            for _ in 0..c.pgmaps {
                pgmap_type.push(*t);
            }
        }
        let fs_pgmap: Vec<u8> =
            pgmap_type.iter().enumerate().filter(|(_, t)| **t == DeviceType::Fsdax).map(|(g, _)| g as u8).collect();
        let ndev = pgmap_type.len() * c.pages;
        Layout {
            npgmaps: pgmap_type.len(),
            pages: c.pages,
            ndev,
            npfns: ndev + c.ram,
            order: c.order,
            blocks: if c.order == 0 { 0 } else { c.addrs >> c.order },
            cpus: c.cpus,
            procs: c.procs,
            addrs: c.addrs,
            tasks: c.tasks,
            files_per_fs: c.files,
            file_pages: c.file_pages,
            nfiles: fs_pgmap.len() * c.files,
            pgmap_type,
            fs_pgmap,
            faults: c.faults != 0,
            devdax_pmd: c.devdax_pmd != 0,
            fsdax_pmd: c.fsdax_pmd != 0,
        }
    }

    /// The pgmap of a device pfn. Callers make sure `pfn` is a device pfn
    /// (`!is_ram`); for a RAM pfn the result names no pgmap.
    #[inline]
    pub fn pgmap_of(&self, pfn: usize) -> usize {
        debug_assert!(pfn < self.ndev, "pgmap_of(RAM pfn {pfn})");
        pfn / self.pages
    }

    /// The device type of a pfn, None for system RAM.
    #[inline]
    pub fn type_of(&self, pfn: usize) -> Option<DeviceType> {
        self.pgmap_type.get(pfn / self.pages).copied().filter(|_| pfn < self.ndev)
    }

    /// Is `pfn` a page of system RAM (not ZONE_DEVICE)?
    #[inline]
    pub fn is_ram(&self, pfn: usize) -> bool {
        pfn >= self.ndev
    }

    /// Is `pfn` a MEMORY_DEVICE_PRIVATE page?
    #[inline]
    pub fn is_private(&self, pfn: usize) -> bool {
        self.type_of(pfn) == Some(DeviceType::Private)
    }

    #[inline]
    pub fn is_coherent(&self, pfn: usize) -> bool {
        self.type_of(pfn) == Some(DeviceType::Coherent)
    }

    /// A page its driver allocates and frees (MEMORY_DEVICE_PRIVATE or
    /// _COHERENT): anonymous memory migrates into it and out of it.
    #[inline]
    pub fn is_driver_allocated(&self, pfn: usize) -> bool {
        self.type_of(pfn).is_some_and(DeviceType::driver_allocated)
    }

    /// Anonymous memory the CPU maps with present PTEs (system RAM and
    /// MEMORY_DEVICE_COHERENT): fork shares it copy-on-write and a write
    /// to a shared page copies it (`vm_normal_page` returns coherent pages
    /// like any other).
    #[inline]
    pub fn is_cpu_anon(&self, pfn: usize) -> bool {
        self.is_ram(pfn) || self.is_coherent(pfn)
    }

    /// Pages whose data moves with migration (system RAM, device-private,
    /// coherent): what they hold is compared after every move.
    #[inline]
    pub fn moves(&self, pfn: usize) -> bool {
        self.is_ram(pfn) || self.is_driver_allocated(pfn)
    }

    /// Is `pfn` a page of a PMD-aligned device-dax device (mapped by PMDs)?
    #[inline]
    pub fn is_devdax_pmd(&self, pfn: usize) -> bool {
        self.devdax_pmd && self.type_of(pfn) == Some(DeviceType::Generic)
    }

    /// Is `pfn` a page of an FS-DAX filesystem whose entries are PMD-sized?
    #[inline]
    pub fn is_fsdax_pmd(&self, pfn: usize) -> bool {
        self.fsdax_pmd && self.type_of(pfn) == Some(DeviceType::Fsdax)
    }

    /// Is `pfn` a DAX page mapped by PMDs (device-dax or FS-DAX)?
    #[inline]
    pub fn is_dax_pmd(&self, pfn: usize) -> bool {
        self.is_devdax_pmd(pfn) || self.is_fsdax_pmd(pfn)
    }

    /// Pages of one DAX entry of pfn `p`'s type: a PMD's worth where the
    /// entries are PMD-sized, else one.
    #[inline]
    pub fn dax_entry_nr(&self, pfn: usize) -> usize {
        if self.is_fsdax_pmd(pfn) {
            self.nr_huge()
        } else {
            1
        }
    }

    /// Does the layout have a MEMORY_DEVICE_COHERENT pgmap?
    #[inline]
    pub fn has_coherent(&self) -> bool {
        self.pgmap_type.contains(&DeviceType::Coherent)
    }

    /// The system RAM pfns.
    #[inline]
    pub fn ram_pfns(&self) -> std::ops::Range<usize> {
        self.ndev..self.npfns
    }

    /// Entries of one migration's `src`/`dst` arrays: a huge folio's worth
    /// (migrate_vma of a PMD block) or a pgmap's (migrate_device_range).
    #[inline]
    pub fn mig_cap(&self) -> usize {
        self.nr_huge().max(self.pages).max(1)
    }

    /// Pages per huge folio.
    #[inline]
    pub fn nr_huge(&self) -> usize {
        1 << self.order
    }

    /// Slot of the PMD covering (proc, addr).
    #[inline]
    pub fn pmd_slot(&self, proc: usize, addr: usize) -> usize {
        proc * self.blocks + (addr >> self.order)
    }

    /// Is address slot `addr` covered by a PMD block (the tail slots beyond
    /// the last whole block are PTE-only)?
    #[inline]
    pub fn in_block(&self, addr: usize) -> bool {
        self.blocks > 0 && (addr >> self.order) < self.blocks
    }

    #[inline]
    pub fn pfns_of(&self, g: usize) -> std::ops::Range<usize> {
        g * self.pages..(g + 1) * self.pages
    }

    /// The pgmap holding file `f`'s filesystem.
    #[inline]
    pub fn file_pgmap(&self, file: usize) -> usize {
        self.fs_pgmap[file / self.files_per_fs] as usize
    }

    /// Slot of entry (file, index) in the DAX entry table.
    #[inline]
    pub fn entry_slot(&self, file: usize, index: usize) -> usize {
        file * self.file_pages + index
    }

    #[inline]
    pub fn pte_slot(&self, proc: usize, addr: usize) -> usize {
        proc * self.addrs + addr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn built(types: &[&str], fields: &[(&str, usize)], order: Option<usize>) -> Result<Shape, ConfigError> {
        let types: Vec<String> = types.iter().map(|t| t.to_string()).collect();
        Shape::build(Some(&types), fields, None, order)
    }

    /// RAM and huge pages come with the types that need them, and a
    /// PMD-aligned device-dax device brings huge pages of its own.
    #[test]
    fn memory_defaults_follow_the_types_and_the_devdax_alignment() {
        let s = built(&["generic"], &[], None).unwrap();
        assert_eq!((s.ram, s.order), (0, 0), "device-dax alone needs neither");
        let s = built(&["private"], &[], None).unwrap();
        assert_eq!((s.ram, s.order), (Shape::default().ram, Shape::default().order));
        let s = built(&["generic"], &[("devdax_pmd", 1)], None).unwrap();
        assert_eq!((s.ram, s.order), (0, 1), "a PMD-aligned device needs huge pages");
        let s = built(&["generic"], &[("devdax_pmd", 1)], Some(2)).unwrap();
        assert_eq!(s.order, 2, "an explicit order stays");
        let e = built(&["generic"], &[("devdax_pmd", 1)], Some(0)).unwrap_err();
        assert!(e.0.contains("order >= 1"), "{e}");
    }

    #[test]
    fn a_pmd_aligned_device_dax_shape_is_checked() {
        let e = built(&["fsdax"], &[("devdax_pmd", 1)], None).unwrap_err();
        assert!(e.0.contains("generic"), "{e}");
        let e = built(&["generic"], &[("devdax_pmd", 1), ("pages", 3)], None).unwrap_err();
        assert!(e.0.contains("multiple of"), "{e}");
        let e = built(&["generic"], &[("devdax_pmd", 1), ("addrs", 1)], None).unwrap_err();
        assert!(e.0.contains("addrs >= 1 << order"), "{e}");
        let e = built(&["generic"], &[("devdax_pmd", 2)], None).unwrap_err();
        assert!(e.0.contains("devdax_pmd must be between 0 and 1"), "{e}");
    }

    #[test]
    fn a_pmd_sized_fs_dax_shape_is_checked() {
        let s = built(&["fsdax"], &[("fsdax_pmd", 1)], None).unwrap();
        assert_eq!(s.order, 1, "PMD-sized FS-DAX entries need huge pages");
        let e = built(&["generic"], &[("fsdax_pmd", 1)], None).unwrap_err();
        assert!(e.0.contains("fsdax_pmd=1 needs the fsdax type"), "{e}");
        let e = built(&["fsdax"], &[("fsdax_pmd", 1), ("pages", 3)], None).unwrap_err();
        assert!(e.0.contains("fsdax_pmd=1 needs whole folios"), "{e}");
        let e = built(&["fsdax"], &[("fsdax_pmd", 1), ("addrs", 1)], None).unwrap_err();
        assert!(e.0.contains("addrs >= 1 << order"), "{e}");
        let e = built(&["fsdax"], &[("fsdax_pmd", 1)], Some(0)).unwrap_err();
        assert!(e.0.contains("order >= 1"), "{e}");
        let l = Layout::new(&built(&["fsdax", "generic"], &[("fsdax_pmd", 1)], None).unwrap());
        assert!(l.is_fsdax_pmd(0) && l.is_dax_pmd(0) && !l.is_devdax_pmd(0));
        assert!(!l.is_dax_pmd(l.pages), "device-dax stays 4 KiB-aligned");
        assert_eq!((l.dax_entry_nr(0), l.dax_entry_nr(l.pages)), (2, 1));
    }

    /// The header writes the options only when on, after the ten fields, so
    /// every program written before them reads and writes unchanged.
    #[test]
    fn header_fields_name_the_options_only_when_on() {
        let plain = Shape::default();
        assert_eq!(plain.header_fields(), plain.fields().to_vec());
        let s = Shape { faults: 1, devdax_pmd: 1, ..Shape::default() };
        let h = s.header_fields();
        assert_eq!(h[..10], plain.fields()[..]);
        assert_eq!(h[10..], [("faults", 1), ("devdax_pmd", 1)]);
        let only = Shape { devdax_pmd: 1, ..Shape::default() };
        assert_eq!(only.header_fields()[10..], [("devdax_pmd", 1)]);
        let fs = Shape { fsdax_pmd: 1, ..Shape::default() };
        assert_eq!(fs.header_fields()[10..], [("fsdax_pmd", 1)]);
    }
}
