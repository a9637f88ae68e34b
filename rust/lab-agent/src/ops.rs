//! The operations a scenario step can ask for, as user space does them.
//!
//! Each returns a JSON reply: `{"status": "ok", ...}` or
//! `{"status": "error", "errno": "EOPNOTSUPP", "detail": ...}`. Stateful
//! operations (files, mappings, pipes, an io_uring) run in an actor process and
//! name their objects; stateless system operations (sysfs writes, truncate,
//! commands) run in a one-shot task process, so one that blocks in the kernel
//! blocks nobody else.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{FileExt, OpenOptionsExt};

use serde_json::{json, Value};

use crate::errno;
use crate::sys::{self, Mapping};

pub const PAGE: usize = 4096;

/// What an actor process holds between steps: everything a real process would
/// (descriptors, mappings, pipes full of spliced pages, an io_uring).
#[derive(Default)]
pub struct State {
    files: HashMap<String, File>,
    maps: HashMap<String, Mapping>,
    pipes: HashMap<String, (OwnedFd, OwnedFd)>,
    /// io_urings by name: a ring holds one fixed-buffer table, so each
    /// independent pin (the fuzzer's translation makes one per pin) has its own.
    rings: HashMap<String, OwnedFd>,
}

pub struct ArgError(pub String);

impl From<ArgError> for Value {
    fn from(e: ArgError) -> Value {
        json!({"status": "error", "errno": "EINVAL", "detail": e.0})
    }
}

fn arg_str<'a>(args: &'a Value, key: &str) -> Result<&'a str, ArgError> {
    args.get(key).and_then(Value::as_str).ok_or_else(|| ArgError(format!("missing string argument `{key}`")))
}

fn arg_u64(args: &Value, key: &str, default: Option<u64>) -> Result<u64, ArgError> {
    match args.get(key) {
        Some(v) => v.as_u64().ok_or_else(|| ArgError(format!("argument `{key}` must be a non-negative integer"))),
        None => default.ok_or_else(|| ArgError(format!("missing integer argument `{key}`"))),
    }
}

fn arg_bool(args: &Value, key: &str, default: bool) -> bool {
    args.get(key).and_then(Value::as_bool).unwrap_or(default)
}

pub fn ok(detail: impl Into<String>) -> Value {
    json!({"status": "ok", "detail": detail.into()})
}

pub fn err(e: &io::Error, what: &str) -> Value {
    json!({"status": "error", "errno": errno::of(e), "detail": format!("{what}: {e}")})
}

/// The page frame behind `addr` from /proc/self/pagemap (bits 0-54 when bit 63
/// "present" is set; the agent runs as root so the PFN is not zeroed), and what
/// /proc/kpagecount and /proc/kpageflags say of it. ZONE_DEVICE pfns are not
/// "online" memory, so those two files report 0 for them.
fn page_info(addr: usize) -> Value {
    let read_u64 = |path: &str, index: u64| -> Option<u64> {
        let f = File::open(path).ok()?;
        let mut b = [0u8; 8];
        f.read_exact_at(&mut b, index * 8).ok()?;
        Some(u64::from_le_bytes(b))
    };
    let Some(entry) = read_u64("/proc/self/pagemap", (addr / PAGE) as u64) else {
        return Value::Null;
    };
    if entry >> 63 == 0 {
        return json!({"present": false});
    }
    let pfn = entry & ((1u64 << 55) - 1);
    json!({
        "present": true,
        "pfn": pfn,
        "kpagecount": read_u64("/proc/kpagecount", pfn),
        "kpageflags": read_u64("/proc/kpageflags", pfn),
    })
}

fn open_options(flags: &str) -> Result<(OpenOptions, i32), ArgError> {
    let mut o = OpenOptions::new();
    let mut custom = 0;
    o.read(true);
    for f in flags.split(',').filter(|f| !f.is_empty()) {
        match f {
            "ro" => {}
            "rw" => {
                o.write(true);
            }
            "create" => {
                o.write(true).create(true);
            }
            "trunc" => {
                o.truncate(true);
            }
            "direct" => custom |= libc::O_DIRECT,
            "sync" => custom |= libc::O_SYNC,
            other => {
                return Err(ArgError(format!("unknown open flag `{other}` (ro, rw, create, trunc, direct, sync)")))
            }
        }
    }
    o.custom_flags(custom);
    Ok((o, custom))
}

impl State {
    fn file_fd(&self, args: &Value, key: &str) -> Result<i32, ArgError> {
        let name = arg_str(args, key)?;
        self.files
            .get(name)
            .map(AsRawFd::as_raw_fd)
            .ok_or_else(|| ArgError(format!("no file named `{name}` in this process")))
    }

    fn map(&self, args: &Value) -> Result<&Mapping, ArgError> {
        let name = arg_str(args, "map")?;
        self.maps.get(name).ok_or_else(|| ArgError(format!("no mapping named `{name}` in this process")))
    }

    /// A page range of a mapping: (`page`, `pages`) in pages.
    fn range(&self, args: &Value) -> Result<(&Mapping, usize, usize), ArgError> {
        let m = self.map(args)?;
        let page = arg_u64(args, "page", Some(0))? as usize;
        let pages = arg_u64(args, "pages", Some(1))? as usize;
        Ok((m, page.saturating_mul(PAGE), pages.saturating_mul(PAGE)))
    }

    pub fn run(&mut self, op: &str, args: &Value) -> Value {
        match self.run_inner(op, args) {
            Ok(v) => v,
            Err(e) => e.into(),
        }
    }

    fn run_inner(&mut self, op: &str, args: &Value) -> Result<Value, ArgError> {
        Ok(match op {
            "open" => {
                let path = &expand_glob(arg_str(args, "path")?);
                let (opts, _) = open_options(args.get("flags").and_then(Value::as_str).unwrap_or("rw"))?;
                match opts.open(path) {
                    Ok(f) => {
                        self.files.insert(arg_str(args, "as")?.to_string(), f);
                        ok(format!("opened {path}"))
                    }
                    Err(e) => err(&e, &format!("open {path}")),
                }
            }
            "close" => {
                let name = arg_str(args, "file")?;
                match self.files.remove(name) {
                    Some(_) => ok(format!("closed {name}")),
                    None => return Err(ArgError(format!("no file named `{name}`"))),
                }
            }
            "mmap" => {
                let pages = arg_u64(args, "pages", Some(1))? as usize;
                let offset = arg_u64(args, "offset", Some(0))? as i64 * PAGE as i64;
                let shared = arg_bool(args, "shared", true);
                let fd = match args.get("file").and_then(Value::as_str) {
                    Some(name) => Some(
                        self.files.get(name).ok_or_else(|| ArgError(format!("no file named `{name}`")))?.as_raw_fd(),
                    ),
                    None => None,
                };
                match Mapping::map(fd, pages * PAGE, offset, shared) {
                    Ok(m) => {
                        let detail = format!("mapped {pages} page(s) at {:#x}", m.addr());
                        self.maps.insert(arg_str(args, "as")?.to_string(), m);
                        ok(detail)
                    }
                    Err(e) => err(&e, "mmap"),
                }
            }
            "touch" => {
                // one byte of each page of the range (one page by default);
                // the report describes the first
                let (m, off, len) = self.range(args)?;
                let write = arg_bool(args, "write", true);
                let n = (len / PAGE).max(1);
                match (0..n).try_for_each(|k| m.touch(off + k * PAGE, write).map(|_| ())) {
                    Ok(()) => {
                        let what = if write { "stored a" } else { "loaded a" };
                        let mut r = if n == 1 {
                            ok(format!("{what} byte at page {}", off / PAGE))
                        } else {
                            ok(format!("{what} byte at pages {}..{}", off / PAGE, off / PAGE + n - 1))
                        };
                        r["page"] = page_info(m.addr() + off);
                        r
                    }
                    Err(e) => err(&e, "touch"),
                }
            }
            "munmap" => {
                let name = arg_str(args, "map")?;
                match self.maps.remove(name) {
                    Some(m) => match m.unmap() {
                        Ok(()) => ok(format!("unmapped {name}")),
                        Err(e) => err(&e, "munmap"),
                    },
                    None => return Err(ArgError(format!("no mapping named `{name}`"))),
                }
            }
            "vmsplice" => {
                let (m, off, len) = self.range(args)?;
                let (r, w) = match sys::pipe() {
                    Ok(p) => p,
                    Err(e) => return Ok(err(&e, "pipe")),
                };
                match m.vmsplice(w.as_raw_fd(), off, len) {
                    Ok(n) => {
                        self.pipes.insert(arg_str(args, "as")?.to_string(), (r, w));
                        ok(format!("vmspliced {n} bytes into a pipe (FOLL_GET references held by the pipe)"))
                    }
                    Err(e) => err(&e, "vmsplice"),
                }
            }
            "close_pipe" => {
                let name = arg_str(args, "pipe")?;
                match self.pipes.remove(name) {
                    Some(_) => ok(format!("closed pipe {name}: its page references are put")),
                    None => return Err(ArgError(format!("no pipe named `{name}`"))),
                }
            }
            "iouring_register" => {
                let name = args.get("ring").and_then(Value::as_str).unwrap_or("ring").to_string();
                if !self.rings.contains_key(&name) {
                    match sys::io_uring_setup(4) {
                        Ok(r) => {
                            self.rings.insert(name.clone(), r);
                        }
                        Err(e) => return Ok(err(&e, "io_uring_setup")),
                    }
                }
                let ring = self.rings.get(&name).map(AsRawFd::as_raw_fd).unwrap_or(-1);
                let (m, off, len) = self.range(args)?;
                match m.io_uring_register(ring, off, len) {
                    Ok(()) => ok("registered a fixed buffer (FOLL_PIN | FOLL_LONGTERM)"),
                    Err(e) => err(&e, "io_uring_register(IORING_REGISTER_BUFFERS)"),
                }
            }
            "iouring_unregister" => {
                let name = args.get("ring").and_then(Value::as_str).unwrap_or("ring");
                match self.rings.get(name) {
                    Some(r) => match sys::io_uring_unregister_buffers(r.as_raw_fd()) {
                        Ok(()) => ok("unregistered the fixed buffers (unpin_user_pages)"),
                        Err(e) => err(&e, "io_uring_register(IORING_UNREGISTER_BUFFERS)"),
                    },
                    None => return Err(ArgError(format!("this process has no io_uring named `{name}`"))),
                }
            }
            "iouring_close" => {
                let name = args.get("ring").and_then(Value::as_str).unwrap_or("ring");
                match self.rings.remove(name) {
                    Some(_) => ok("closed the io_uring (its buffers are unpinned when the ring is freed)"),
                    None => return Err(ArgError(format!("this process has no io_uring named `{name}`"))),
                }
            }
            "drop_holdings" => {
                // A forked child closes the pipes and io_urings it inherited,
                // so every GUP reference and pin stays with one process only.
                let (p, r) = (self.pipes.len(), self.rings.len());
                self.pipes.clear();
                self.rings.clear();
                ok(format!("closed {p} inherited pipe(s) and {r} io_uring(s)"))
            }
            "hmm" => {
                // A test_hmm (dmirror) command on a range of a mapping, the way
                // tools/testing/selftests/mm/hmm-tests.c drives the driver:
                // migrate_to_dev / migrate_to_sys (migrate_vma_*), read / write
                // (the device accesses the pages: hmm_range_fault), snapshot,
                // exclusive, check_exclusive, release.
                let dev = self.file_fd(args, "dev")?;
                let cmd = arg_str(args, "cmd")?;
                let nr = match cmd {
                    "read" => 0,
                    "write" => 1,
                    "migrate_to_dev" => 2,
                    "migrate_to_sys" => 3,
                    "snapshot" => 4,
                    "exclusive" => 5,
                    "check_exclusive" => 6,
                    "release" => 7,
                    other => return Err(ArgError(format!("unknown hmm command `{other}`"))),
                };
                let (m, off, len) = self.range(args)?;
                let mut buf = vec![0u8; len.max(PAGE)];
                if cmd == "write" {
                    buf.iter_mut().for_each(|b| *b = 0x3c);
                }
                match m.hmm_ioctl(dev, nr, off, len, &mut buf) {
                    Ok(c) => {
                        let mut r = ok(format!("hmm {cmd}: {} page(s) done, {} fault(s)", c.cpages, c.faults));
                        r["cpages"] = json!(c.cpages);
                        r["faults"] = json!(c.faults);
                        if cmd == "snapshot" {
                            r["prot"] = json!(buf[..(len / PAGE)].to_vec());
                        }
                        r
                    }
                    Err(e) => err(&e, &format!("ioctl HMM_DMIRROR_{}", cmd.to_uppercase())),
                }
            }
            "dio_read" => {
                // O_DIRECT read from a block device into the mapping: the block
                // layer pins the pages for as long as the I/O is in flight.
                let (m, off, len) = self.range(args)?;
                let dev = arg_str(args, "dev")?;
                let f = match OpenOptions::new().read(true).custom_flags(libc::O_DIRECT).open(dev) {
                    Ok(f) => f,
                    Err(e) => return Ok(err(&e, &format!("open {dev} O_DIRECT"))),
                };
                match m.pread(f.as_raw_fd(), off, len, 0) {
                    Ok(n) => ok(format!("O_DIRECT read of {n} bytes from {dev} completed")),
                    Err(e) => err(&e, "O_DIRECT pread"),
                }
            }
            _ => return run_stateless(op, args),
        })
    }
}

/// Expand `*` in path components (sysfs device names such as
/// `/sys/bus/pci/devices/*/p2pmem/allocate`): the first match in sorted
/// order, or the path unchanged when nothing matches.
pub fn expand_glob(path: &str) -> String {
    fn matches(pat: &str, name: &str) -> bool {
        match pat.split_once('*') {
            None => pat == name,
            Some((pre, rest)) => {
                name.starts_with(pre) && (0..=name.len() - pre.len()).any(|i| matches(rest, &name[pre.len() + i..]))
            }
        }
    }
    fn walk(base: std::path::PathBuf, parts: &[&str]) -> Option<std::path::PathBuf> {
        let Some((first, rest)) = parts.split_first() else {
            return Some(base);
        };
        if !first.contains('*') {
            let next = base.join(first);
            return if rest.is_empty() || next.exists() { walk(next, rest) } else { None };
        }
        let mut names: Vec<String> = std::fs::read_dir(&base)
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .filter(|n| matches(first, n))
            .collect();
        names.sort();
        names.into_iter().find_map(|n| walk(base.join(n), rest))
    }
    if !path.contains('*') {
        return path.to_string();
    }
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    walk(std::path::PathBuf::from("/"), &parts)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.to_string())
}

/// Operations that need no process state (run in one-shot task processes, or
/// in an actor when a scenario says so).
fn run_stateless(op: &str, args: &Value) -> Result<Value, ArgError> {
    Ok(match op {
        "write_sysfs" => {
            let path = arg_str(args, "path")?;
            let value = arg_str(args, "value")?;
            match OpenOptions::new().write(true).open(path).and_then(|mut f| f.write_all(value.as_bytes())) {
                Ok(()) => ok(format!("wrote {value:?} to {path}")),
                Err(e) => err(&e, &format!("write {path}")),
            }
        }
        "unbind_driver" => {
            // Unbind every device bound to a driver (or the one named): the
            // path the kernel takes when a device goes away under its users,
            // with no user-space tool refusing because a file system is
            // mounted on it.
            let driver = arg_str(args, "driver")?;
            let names: Vec<String> = match args.get("device").and_then(Value::as_str) {
                Some(d) => vec![d.to_string()],
                None => match std::fs::read_dir(driver) {
                    Ok(rd) => rd
                        .filter_map(|e| e.ok())
                        .filter(|e| e.file_type().map(|t| t.is_symlink()).unwrap_or(false))
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .filter(|n| n != "module")
                        .collect(),
                    Err(e) => return Ok(err(&e, &format!("read {driver}"))),
                },
            };
            if names.is_empty() {
                return Ok(
                    json!({"status": "error", "errno": "ENODEV", "detail": format!("no device is bound to {driver}")}),
                );
            }
            let unbind = format!("{driver}/unbind");
            for n in &names {
                if let Err(e) = OpenOptions::new().write(true).open(&unbind).and_then(|mut f| f.write_all(n.as_bytes()))
                {
                    return Ok(err(&e, &format!("write {n} to {unbind}")));
                }
            }
            ok(format!("unbound {} from {driver}", names.join(", ")))
        }
        "read_file" => {
            let path = arg_str(args, "path")?;
            match std::fs::read_to_string(path) {
                Ok(s) => ok(s.chars().take(4000).collect::<String>()),
                Err(e) => err(&e, &format!("read {path}")),
            }
        }
        "write_file" => {
            // Create a file and write `pages` pages to it, then fsync: the
            // filesystem allocates its blocks (dax_associate_entry happens at
            // the first fault of a mapping, the block allocation here).
            let path = arg_str(args, "path")?;
            let pages = arg_u64(args, "pages", Some(1))? as usize;
            let r = File::create(path).and_then(|mut f| {
                f.write_all(&vec![0xa5u8; pages * PAGE])?;
                f.sync_all()
            });
            match r {
                Ok(()) => ok(format!("wrote {pages} page(s) to {path}")),
                Err(e) => err(&e, &format!("write {path}")),
            }
        }
        "truncate" => {
            let path = arg_str(args, "path")?;
            let size = arg_u64(args, "size", Some(0))? as i64;
            match OpenOptions::new().write(true).open(path).and_then(|f| sys::ftruncate(f.as_raw_fd(), size)) {
                Ok(()) => ok(format!("truncated {path} to {size} bytes")),
                Err(e) => err(&e, &format!("truncate {path}")),
            }
        }
        "reflink" => {
            // cp --reflink=always: dst (created or emptied) shares src's blocks
            let src = arg_str(args, "src")?;
            let dst = arg_str(args, "dst")?;
            let r = File::open(src).and_then(|s| {
                let d = File::create(dst)?;
                sys::ficlone(d.as_raw_fd(), s.as_raw_fd())?;
                d.sync_all()
            });
            match r {
                Ok(()) => ok(format!("{dst} now shares the blocks of {src} (FICLONE)")),
                Err(e) => err(&e, &format!("FICLONE {src} -> {dst}")),
            }
        }
        "punch_hole" => {
            let path = arg_str(args, "path")?;
            let off = arg_u64(args, "page", Some(0))? as i64 * PAGE as i64;
            let len = arg_u64(args, "pages", Some(1))? as i64 * PAGE as i64;
            let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
            match OpenOptions::new().write(true).open(path).and_then(|f| sys::fallocate(f.as_raw_fd(), mode, off, len))
            {
                Ok(()) => ok(format!("punched a hole at bytes {off}..+{len} of {path}")),
                Err(e) => err(&e, &format!("fallocate(PUNCH_HOLE) {path}")),
            }
        }
        "mount" => {
            let dev = arg_str(args, "dev")?;
            let dir = arg_str(args, "dir")?;
            let fstype = arg_str(args, "fstype")?;
            let options = args.get("options").and_then(Value::as_str).unwrap_or("");
            let _ = std::fs::create_dir_all(dir);
            match sys::mount(dev, dir, fstype, 0, options) {
                Ok(()) => ok(format!("mounted {dev} on {dir} ({fstype}, {options})")),
                Err(e) => err(&e, &format!("mount {dev} {dir}")),
            }
        }
        "umount" => {
            let dir = arg_str(args, "dir")?;
            match sys::umount(dir) {
                Ok(()) => ok(format!("unmounted {dir}")),
                Err(e) => err(&e, &format!("umount {dir}")),
            }
        }
        "rmmod" => {
            let name = arg_str(args, "module")?;
            match sys::delete_module(name) {
                Ok(()) => ok(format!("removed module {name}")),
                Err(e) => err(&e, &format!("delete_module({name})")),
            }
        }
        "insmod" => {
            let name = arg_str(args, "module")?;
            let params = args.get("params").and_then(Value::as_str).unwrap_or("");
            let path = format!("/lib/modules/{name}.ko");
            match File::open(&path).and_then(|f| sys::finit_module(f.as_raw_fd(), params)) {
                Ok(()) => ok(format!("loaded module {name}")),
                Err(e) => err(&e, &format!("finit_module({path})")),
            }
        }
        "sleep" => {
            let ms = arg_u64(args, "ms", None)?;
            std::thread::sleep(std::time::Duration::from_millis(ms));
            ok(format!("slept {ms} ms"))
        }
        "sync" => {
            sys::sync();
            ok("sync")
        }
        "exec" => {
            let argv: Vec<String> = match args.get("argv").and_then(Value::as_array) {
                Some(a) => a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
                None => return Err(ArgError("missing array argument `argv`".into())),
            };
            exec_capture(&argv)
        }
        other => return Err(ArgError(format!("unknown operation `{other}`"))),
    })
}

/// Run a command with its output captured (at most 8 KiB kept); exit status 0
/// is "ok", anything else an error with the output.
pub fn exec_capture(argv: &[String]) -> Value {
    let (r, w) = match sys::pipe() {
        Ok(p) => p,
        Err(e) => return err(&e, "pipe"),
    };
    let child = match sys::fork() {
        Ok(sys::Fork::Child) => {
            drop(r);
            let fd = w.as_raw_fd();
            let _ = sys::dup_onto(fd, 1).and_then(|_| sys::dup_onto(fd, 2));
            let e = sys::exec(argv);
            let _ = writeln!(std::io::stderr(), "exec {}: {e}", argv.first().map(String::as_str).unwrap_or(""));
            sys::exit_now(127);
        }
        Ok(sys::Fork::Parent(pid)) => pid,
        Err(e) => return err(&e, "fork"),
    };
    drop(w);
    let mut out = Vec::new();
    let _ = File::from(r).take(1 << 20).read_to_end(&mut out);
    let status = sys::wait_blocking(child);
    let text: String = String::from_utf8_lossy(&out).chars().take(8192).collect();
    let cmd = argv.join(" ");
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        json!({"status": "ok", "detail": format!("`{cmd}`"), "output": text})
    } else {
        json!({"status": "error", "errno": "EXIT", "detail": format!("`{cmd}` {}", sys::describe_status(status)), "output": text})
    }
}
