"""struct page flags and ``page->mapping`` values (a leaf module: no imports,
so every concept module can name them).

``PG_FREE_LIST``, ``PG_POOL`` and ``PG_INIT_REF`` are the model's own
bookkeeping of who owns a free page; the others are the kernel's flags.
"""

# page flags
PG_LOCKED = 1 << 0
PG_FREE_LIST = 1 << 1  # on its device-private driver's free list
PG_POOL = 1 << 2  # allocated from the P2P gen_pool
PG_INIT_REF = 1 << 3  # still holds its memremap_pages pgmap reference (E1)
PG_LRU = 1 << 4  # on an LRU list (system RAM only)
PG_DIRTY = 1 << 5
PG_BUDDY = 1 << 6  # free in the buddy allocator (system RAM)

# page->mapping
MAPPING_NONE = 0
MAPPING_FILE = 2  # + file id
MAPPING_ANON_BIT = 0x80  # PAGE_MAPPING_ANON: the low bits are the anon_vma (a process slot)


def anon_mapping(av: int) -> int:
    """``page->mapping`` for anon_vma ``av``."""
    return MAPPING_ANON_BIT | (av & 0x7F)


def is_anon_mapping(mp: int) -> bool:
    return mp & MAPPING_ANON_BIT != 0


def anon_vma_of(mp: int) -> int | None:
    return mp & 0x7F if is_anon_mapping(mp) else None


def is_file_mapping(mp: int) -> bool:
    return mp >= MAPPING_FILE and not is_anon_mapping(mp)
