//! The process's resident memory as the kernel reports it: `VmRSS` (now)
//! and `VmHWM` (the high-water mark) from `/proc/self/status`
//! (fs/proc/task_mmu.c `task_mem`). The explorer's `--max-memory` is a cap
//! on what the process holds, so it is checked against this reading — it
//! sees what no accounting of our own structures does: the allocator's
//! overhead, memory freed but not returned, the host program (Python) — and
//! the explorer adds only what it is about to allocate.
//!
//! Elsewhere (no procfs) both readings are `None` and the explorer falls
//! back to counting the bytes of its own structures.

use std::io::Read;

/// Resident set size now, in bytes.
pub fn rss_bytes() -> Option<u64> {
    status_kb("VmRSS:").map(|kb| kb * 1024)
}

/// Peak resident set size of the process so far, in bytes.
pub fn peak_rss_bytes() -> Option<u64> {
    status_kb("VmHWM:").map(|kb| kb * 1024)
}

/// Bytes of the table of a std (hashbrown) hash map or set with room for
/// `capacity` entries of `entry` bytes: a power of two of buckets kept at
/// most 7/8 full, one control byte per bucket (hashbrown's
/// `capacity_to_buckets`).
pub fn table_bytes(capacity: usize, entry: usize) -> u64 {
    if capacity == 0 {
        return 0;
    }
    let buckets = if capacity < 4 {
        4
    } else if capacity < 8 {
        8
    } else {
        (capacity.saturating_mul(8) / 7).checked_next_power_of_two().unwrap_or(usize::MAX / 2)
    };
    buckets as u64 * (entry as u64 + 1) + 16
}

/// The new table a map of `len` entries with room for `capacity` allocates
/// when `extra` more arrive (0 when they fit): while it rehashes, the old
/// table is still held, so this is on top of what is resident.
pub fn growth_bytes(len: usize, capacity: usize, extra: usize, entry: usize) -> u64 {
    let want = len.saturating_add(extra);
    if want <= capacity {
        0
    } else {
        // hashbrown grows to at least one more than its full capacity
        table_bytes(want.max(capacity.saturating_add(1)), entry)
    }
}

/// The new buffer a `Vec` of `len` elements of `elem` bytes with room for
/// `capacity` allocates when `extra` more arrive (0 when they fit): std
/// doubles, or takes exactly what is needed if that is more.
pub fn vec_growth_bytes(len: usize, capacity: usize, extra: usize, elem: usize) -> u64 {
    let want = len.saturating_add(extra);
    if want <= capacity {
        0
    } else {
        want.max(capacity.saturating_mul(2)) as u64 * elem as u64
    }
}

fn status_kb(field: &str) -> Option<u64> {
    // a fixed buffer: the check runs once per chunk of a search and must not
    // allocate (the file is about 1.5 KiB; the fields read come early)
    let mut buf = [0u8; 4096];
    let mut f = std::fs::File::open("/proc/self/status").ok()?;
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(_) => return None,
        }
    }
    let text = std::str::from_utf8(&buf[..n]).ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    line[field.len()..].trim().trim_end_matches("kB").trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_grow_with_memory_touched() {
        let Some(before) = rss_bytes() else { return };
        // 64 MiB touched page by page is resident
        let v = vec![1u8; 64 << 20];
        let after = rss_bytes().unwrap_or(0);
        assert!(after >= before + (48 << 20), "{before} -> {after}");
        assert!(peak_rss_bytes().unwrap_or(0) >= after);
        drop(v);
    }

    #[test]
    fn table_sizes_follow_the_std_hash_map() {
        use std::collections::HashSet;
        for n in [0usize, 1, 3, 4, 7, 8, 100, 1000, 28_672, 28_673] {
            let s: HashSet<u64> = (0..n as u64).collect();
            let b = table_bytes(s.capacity(), 8);
            // a power of two of 9-byte buckets (plus the group tail) that holds n
            assert!(n == 0 || b >= n as u64 * 9 + 16, "{n}: {b}");
            if n > 0 {
                assert!(((b - 16) / 9).is_power_of_two(), "{n}: {b}");
            }
        }
        let mut s: HashSet<u64> = HashSet::with_capacity(1000);
        let cap = s.capacity();
        s.extend(0..cap as u64);
        assert_eq!(growth_bytes(s.len(), s.capacity(), 0, 8), 0);
        let predicted = growth_bytes(s.len(), s.capacity(), 1, 8);
        s.insert(u64::MAX);
        assert_eq!(predicted, table_bytes(s.capacity(), 8), "the growth lands on the table predicted");
    }
}
