"""zdfuzz: an executable model of Linux ZONE_DEVICE reference counting.

The Rust core (``zdfuzz._core``) models the kernel's ``pgmap->ref`` percpu_ref,
struct page / folio refcounts, mapcounts and pins for the four ZONE_DEVICE
types under each kernel era's rules; this package drives it.
"""

from zdfuzz._core import PercpuRef, PercpuRefEvent, __version__

__all__ = ["PercpuRef", "PercpuRefEvent", "__version__"]
