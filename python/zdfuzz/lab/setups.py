"""Guest set-ups: how the lab gives a scenario its ZONE_DEVICE memory.

Every set-up reserves a legacy persistent-memory region on the kernel
command line (``memmap=128M!1G``: the e820 "protected" range that
``nd_e820`` turns into a libnvdimm region) and converts its namespace with
``ndctl``:

* ``devdax`` — ``ndctl create-namespace -m devdax``: ``/dev/dax0.0``, a
  device-dax (MEMORY_DEVICE_GENERIC) pgmap whose struct pages live in system
  RAM (``map=dev``), 4 KiB-aligned; ``devdax-2m`` the same aligned to 2 MiB
  (PMD mappings, compound folios from v5.17).
* ``fsdax-ext4`` / ``fsdax-xfs`` — ``-m fsdax``: ``/dev/pmem0`` with a
  MEMORY_DEVICE_FS_DAX pgmap, a file system on it mounted with ``-o dax``;
  ``fsdax-xfs-2m`` the XFS with a 2 MiB stripe unit, so extents are
  PMD-aligned and faults map PMDs; ``fsdax-xfs-reflink`` the XFS with
  reflink on, so files share blocks (the ``reflink`` step, FICLONE).

The region is 128 MiB at 1 GiB of a 2 GiB guest (512 MiB for XFS, whose
mkfs refuses less than 300 MB): whole x86-64 memory sections (128 MiB each)
that hold nothing but the pmem. When ``memunmap_pages``
removes the pgmap, the section's whole memmap (its 2 MiB of struct pages,
one vmemmap PMD) is freed and unmapped, so a later access to one of those
struct pages faults instead of landing in memmap that happens to be shared
with RAM in the same section. That turns a use of a torn-down struct page
into an oops even on a kernel without KASAN.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MEMORY = "2G"
PMEM_AT = "1G"


@dataclass(frozen=True)
class Setup:
    name: str
    doc: str
    modules: list[str]
    # (argv, Debian package of argv[0]) run in order; a failure stops the scenario
    commands: list[tuple[list[str], str]] = field(default_factory=list)
    needs: list[str] = field(default_factory=list)
    pmem: str = "128M"
    # extra QEMU arguments ("{tmp}" is the run's temporary directory) and the
    # sparse disk images (name, bytes) created there for them
    qemu: list[str] = field(default_factory=list)
    disks: list[tuple[str, int]] = field(default_factory=list)

    @property
    def cmdline(self) -> str:
        """The kernel command line that reserves the pmem region."""
        return f"memmap={self.pmem}!{PMEM_AT}"


NDCTL = "/usr/bin/ndctl"
CREATE = [NDCTL, "create-namespace", "-f", "-e", "namespace0.0"]


def _xfs_setup(
    name: str, doc: str, mkfs_options: list[str], needs: tuple[str, ...] = (), reflink: bool = False
) -> Setup:
    """An fsdax namespace with XFS (reflink off unless asked for, plus
    ``mkfs_options``) mounted ``-o dax`` on /mnt, in a 512 MiB region
    (mkfs.xfs refuses less than 300 MB)."""
    return Setup(
        name,
        doc,
        ["crc32c_generic", "nd_e820", "nd_pmem", "xfs"],
        [
            (CREATE + ["-m", "fsdax", "-M", "dev"], "ndctl"),
            (
                ["/usr/sbin/mkfs.xfs", "-q", "-f", "-m", f"reflink={int(reflink)}", *mkfs_options, "/dev/pmem0"],
                "xfsprogs",
            ),
            (["/bin/mount", "-t", "xfs", "-o", "dax", "/dev/pmem0", "/mnt"], "busybox-static"),
        ],
        [
            "CONFIG_ZONE_DEVICE",
            "CONFIG_LIBNVDIMM",
            "CONFIG_X86_PMEM_LEGACY",
            "CONFIG_BLK_DEV_PMEM",
            "CONFIG_FS_DAX",
            *needs,
            "CONFIG_XFS_FS",
        ],
        pmem="512M",
    )


SETUPS: dict[str, Setup] = {
    "none": Setup("none", "no ZONE_DEVICE memory (system RAM only)", []),
    "devdax": Setup(
        "devdax",
        "/dev/dax0.0: device-dax over the legacy pmem region (MEMORY_DEVICE_GENERIC)",
        ["nd_e820", "nd_pmem", "dax_pmem", "device_dax"],
        [(CREATE + ["-m", "devdax", "-M", "dev", "-a", "4096"], "ndctl")],
        ["CONFIG_ZONE_DEVICE", "CONFIG_LIBNVDIMM", "CONFIG_X86_PMEM_LEGACY", "CONFIG_DEV_DAX", "CONFIG_DEV_DAX_PMEM"],
    ),
    "devdax-2m": Setup(
        "devdax-2m",
        "/dev/dax0.0 aligned to 2 MiB (ndctl -a 2M, the default of a devdax namespace): faults map PMDs, and from "
        "v5.17 the pages are compound folios of that order (the model's devdax_pmd=1)",
        ["nd_e820", "nd_pmem", "dax_pmem", "device_dax"],
        [(CREATE + ["-m", "devdax", "-M", "dev", "-a", "2M"], "ndctl")],
        ["CONFIG_ZONE_DEVICE", "CONFIG_LIBNVDIMM", "CONFIG_X86_PMEM_LEGACY", "CONFIG_DEV_DAX", "CONFIG_DEV_DAX_PMEM"],
    ),
    "devdax-altmap": Setup(
        "devdax-altmap",
        "/dev/dax0.0 with its struct pages in the pmem itself (ndctl -M mem: a vmem_altmap); the unbind "
        "still unmaps that memmap (vmemmap_free), so a late put faults on it as with -M dev",
        ["nd_e820", "nd_pmem", "dax_pmem", "device_dax"],
        [(CREATE + ["-m", "devdax", "-M", "mem", "-a", "4096"], "ndctl")],
        ["CONFIG_ZONE_DEVICE", "CONFIG_LIBNVDIMM", "CONFIG_X86_PMEM_LEGACY", "CONFIG_DEV_DAX", "CONFIG_DEV_DAX_PMEM"],
    ),
    "hmm": Setup(
        "hmm",
        "/dev/hmm_dmirror0 and 1: test_hmm's device-private mirrors (MEMORY_DEVICE_PRIVATE), lab kernel only",
        ["test_hmm"],
        [],
        ["CONFIG_ZONE_DEVICE", "CONFIG_DEVICE_PRIVATE", "CONFIG_TEST_HMM"],
    ),
    "p2pdma": Setup(
        "p2pdma",
        "an emulated NVMe controller whose 16 MiB controller memory buffer the nvme driver registers as p2pmem "
        "(pci_p2pdma_add_resource, MEMORY_DEVICE_PCI_P2PDMA); /dev/nvme0n1 is its namespace; lab kernel only",
        [],
        [],
        ["CONFIG_ZONE_DEVICE", "CONFIG_PCI_P2PDMA", "CONFIG_BLK_DEV_NVME"],
        qemu=[
            "-drive",
            "file={tmp}/nvme0.img,if=none,id=nvm0,format=raw",
            "-device",
            "nvme,serial=zdfuzz0,drive=nvm0,cmb_size_mb=16",
        ],
        disks=[("nvme0.img", 64 << 20)],
    ),
    "fsdax-ext4": Setup(
        "fsdax-ext4",
        "/dev/pmem0 (MEMORY_DEVICE_FS_DAX) with ext4 mounted -o dax on /mnt",
        ["crc32c_generic", "nd_e820", "nd_pmem", "ext4"],
        [
            (CREATE + ["-m", "fsdax", "-M", "dev"], "ndctl"),
            (["/usr/sbin/mke2fs", "-q", "-t", "ext4", "-F", "-b", "4096", "/dev/pmem0"], "e2fsprogs"),
            (["/bin/mount", "-t", "ext4", "-o", "dax", "/dev/pmem0", "/mnt"], "busybox-static"),
        ],
        [
            "CONFIG_ZONE_DEVICE",
            "CONFIG_LIBNVDIMM",
            "CONFIG_X86_PMEM_LEGACY",
            "CONFIG_BLK_DEV_PMEM",
            "CONFIG_FS_DAX",
            "CONFIG_EXT4_FS",
        ],
    ),
    "fsdax-xfs": _xfs_setup(
        "fsdax-xfs",
        "/dev/pmem0 (MEMORY_DEVICE_FS_DAX) with XFS (reflink off) mounted -o dax on /mnt",
        [],
    ),
    "fsdax-xfs-reflink": _xfs_setup(
        "fsdax-xfs-reflink",
        "/dev/pmem0 (MEMORY_DEVICE_FS_DAX) with XFS made with reflink on (mkfs.xfs -m reflink=1), mounted -o dax "
        "on /mnt: files can share blocks (FICLONE), and a write fault on a shared block copies it (DAX CoW, v5.19+)",
        [],
        reflink=True,
    ),
    "fsdax-xfs-2m": _xfs_setup(
        "fsdax-xfs-2m",
        "/dev/pmem0 (MEMORY_DEVICE_FS_DAX) with XFS made with a 2 MiB stripe unit (mkfs.xfs -d su=2m,sw=1, as in "
        "the reproducer of 'mm/memremap: fix spurious large folio warning for FS-DAX'), mounted -o dax on /mnt: "
        "file extents are 2 MiB-aligned, so faults map PMDs (the model's fsdax_pmd=1)",
        # the log and AG options only make mkfs accept the 512 MiB region
        ["-d", "su=2m,sw=1,agcount=2", "-l", "size=64m"],
        ("CONFIG_FS_DAX_PMD",),
    ),
}


def slow_device(delay_ms: int) -> tuple[list[str], list[tuple[list[str], str]]]:
    """A block device whose every read takes ``delay_ms``: device-mapper's
    ``delay`` target over a loop device backed by a RAM file. An O_DIRECT
    read from it into a user mapping keeps the block layer's pin on the
    destination pages (FOLL_PIN, ``iov_iter_extract_pages``) for that long,
    without the partition scan a slow null_blk or scsi_debug disk would go
    through at probe time (device-mapper disks are created with
    GENHD_FL_NO_PART). The device is ``/dev/dm-0``.

    Returns (modules, commands)."""
    table = f"0 2048 delay /dev/loop0 0 {delay_ms}"
    return (
        ["loop", "dm_mod", "dm_delay"],
        [
            (["/bin/dd", "if=/dev/zero", "of=/tmp/slow.img", "bs=1M", "count=1"], "busybox-static"),
            (["/bin/losetup", "/dev/loop0", "/tmp/slow.img"], "busybox-static"),
            (["/usr/sbin/dmsetup", "create", "slow", "--noudevsync", "--table", table], "dmsetup"),
        ],
    )
