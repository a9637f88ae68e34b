//! Thin wrappers over the system calls the agent needs, each returning
//! `io::Result`. Every `unsafe` block is here, with the reason it is sound;
//! the rest of the agent is safe code.
//!
//! The calls mirror what user space does to reach the kernel paths under test:
//! `mmap` + a store (the fault path, `dev_dax_huge_fault` / `dax_iomap_fault`),
//! `vmsplice` (GUP with FOLL_GET, `iov_iter_get_pages2`), io_uring buffer
//! registration (`pin_user_pages(FOLL_WRITE | FOLL_LONGTERM)` in
//! `io_sqe_buffer_register`), and `fork`.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

fn cvt(r: libc::c_long) -> io::Result<libc::c_long> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn cstr(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in a path"))
}

/// A memory mapping the agent created. Only this type hands out addresses of
/// user memory, and every access goes through a bounds-checked method, so a
/// scenario can never make the agent touch memory it did not map.
pub struct Mapping {
    addr: usize,
    len: usize,
}

impl Mapping {
    /// `mmap(NULL, len, PROT_READ|PROT_WRITE, MAP_SHARED|MAP_PRIVATE, fd, offset)`;
    /// `fd` None maps anonymous memory (system RAM pages).
    pub fn map(fd: Option<RawFd>, len: usize, offset: i64, shared: bool) -> io::Result<Mapping> {
        let mut flags = if shared { libc::MAP_SHARED } else { libc::MAP_PRIVATE };
        if fd.is_none() {
            flags |= libc::MAP_ANONYMOUS;
        }
        // SAFETY: a NULL hint lets the kernel choose an address that overlaps no
        // existing mapping, so no memory owned by Rust objects is replaced; the
        // region is reached only through this type's bounds-checked methods.
        let p = unsafe {
            libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, flags, fd.unwrap_or(-1), offset)
        };
        if p == libc::MAP_FAILED {
            Err(io::Error::last_os_error())
        } else {
            Ok(Mapping { addr: p as usize, len })
        }
    }

    pub fn addr(&self) -> usize {
        self.addr
    }

    fn range(&self, offset: usize, len: usize) -> io::Result<usize> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len && len > 0 => Ok(self.addr + offset),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bytes {offset}..+{len} are outside the {}-byte mapping", self.len),
            )),
        }
    }

    /// Store one byte at `offset` if `write` (a write fault on first touch),
    /// then load it back (a read fault otherwise).
    pub fn touch(&self, offset: usize, write: bool) -> io::Result<u8> {
        let p = self.range(offset, 1)? as *mut u8;
        // SAFETY: `p` lies inside this live PROT_READ|PROT_WRITE mapping (checked
        // by `range`). A fault the kernel cannot resolve raises SIGBUS/SIGSEGV,
        // which kills this actor process and is reported as "died" by the main
        // agent: never undefined behaviour in a surviving process. Volatile, so
        // the access really happens.
        unsafe {
            if write {
                std::ptr::write_volatile(p, 0x5a);
            }
            Ok(std::ptr::read_volatile(p))
        }
    }

    /// `vmsplice(pipe, {range}, 0)`: the pipe keeps page references (FOLL_GET)
    /// on the pages until it is drained or closed.
    pub fn vmsplice(&self, pipe: RawFd, offset: usize, len: usize) -> io::Result<usize> {
        let iov = libc::iovec { iov_base: self.range(offset, len)? as *mut libc::c_void, iov_len: len };
        // SAFETY: one valid iovec inside this mapping; the kernel reads the
        // iovec and takes references on the pages.
        cvt(unsafe { libc::vmsplice(pipe, &iov, 1, 0) } as libc::c_long).map(|n| n as usize)
    }

    /// Register the range as fixed buffer 0 of `ring`
    /// (`pin_user_pages(FOLL_WRITE | FOLL_LONGTERM)`).
    pub fn io_uring_register(&self, ring: RawFd, offset: usize, len: usize) -> io::Result<()> {
        let iov = libc::iovec { iov_base: self.range(offset, len)? as *mut libc::c_void, iov_len: len };
        // SAFETY: `iov` is one valid iovec inside this mapping; the kernel copies
        // it and pins the pages.
        cvt(unsafe { libc::syscall(SYS_IO_URING_REGISTER, ring, IORING_REGISTER_BUFFERS, &iov, 1u32) }).map(|_| ())
    }

    /// `pread(fd, range, offset)` into the mapping (with O_DIRECT the block
    /// layer pins the pages for the duration of the I/O).
    pub fn pread(&self, fd: RawFd, offset: usize, len: usize, file_offset: i64) -> io::Result<usize> {
        let p = self.range(offset, len)?;
        // SAFETY: `p..p+len` is inside this live writable mapping; the kernel
        // writes into it, and no Rust reference aliases that memory.
        cvt(unsafe { libc::pread(fd, p as *mut libc::c_void, len, file_offset) } as libc::c_long).map(|n| n as usize)
    }

    /// `munmap` the whole mapping.
    pub fn unmap(self) -> io::Result<()> {
        // SAFETY: this mapping was created by `map` and is consumed here, so no
        // later access through it is possible.
        cvt(unsafe { libc::munmap(self.addr as *mut libc::c_void, self.len) } as libc::c_long).map(|_| ())
    }
}

/// `struct hmm_dmirror_cmd` (lib/test_hmm_uapi.h): the test_hmm driver's
/// ioctl argument.
#[repr(C)]
#[derive(Default, Clone, Copy)]
pub struct HmmCmd {
    pub addr: u64,
    pub ptr: u64,
    pub npages: u64,
    pub cpages: u64,
    pub faults: u64,
}

/// `_IOWR('H', nr, struct hmm_dmirror_cmd)`.
pub const fn hmm_request(nr: u8) -> libc::c_ulong {
    (3 << 30)
        | ((std::mem::size_of::<HmmCmd>() as libc::c_ulong) << 16)
        | ((b'H' as libc::c_ulong) << 8)
        | nr as libc::c_ulong
}

impl Mapping {
    /// A test_hmm ioctl on pages `offset..offset+len` of this mapping, with
    /// `buf` (at least `len` bytes) as the driver's bounce buffer.
    pub fn hmm_ioctl(&self, dev: RawFd, nr: u8, offset: usize, len: usize, buf: &mut [u8]) -> io::Result<HmmCmd> {
        let addr = self.range(offset, len)?;
        if buf.len() < len {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "bounce buffer shorter than the range"));
        }
        let mut cmd = HmmCmd {
            addr: addr as u64,
            ptr: buf.as_mut_ptr() as u64,
            npages: (len / 4096) as u64,
            ..HmmCmd::default()
        };
        // SAFETY: `cmd` is a valid struct hmm_dmirror_cmd the driver reads and
        // writes back; `cmd.ptr` points at `buf`, a live buffer of at least
        // `npages` pages (or bytes, for a snapshot) that the driver may fill;
        // `cmd.addr` names pages of this live mapping. Nothing else aliases buf.
        cvt(unsafe { libc::ioctl(dev, hmm_request(nr), &mut cmd as *mut HmmCmd) } as libc::c_long)?;
        Ok(cmd)
    }
}

/// `delete_module(name, O_NONBLOCK)`: rmmod.
pub fn delete_module(name: &str) -> io::Result<()> {
    let c = cstr(name)?;
    // SAFETY: a valid NUL-terminated module name; no other pointers.
    cvt(unsafe { libc::syscall(libc::SYS_delete_module, c.as_ptr(), libc::O_NONBLOCK) }).map(|_| ())
}

pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is a valid array of two ints for the kernel to fill.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } as libc::c_long)?;
    // SAFETY: both descriptors were just returned by pipe2 and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

const SYS_IO_URING_SETUP: libc::c_long = 425;
const SYS_IO_URING_REGISTER: libc::c_long = 427;
pub const IORING_REGISTER_BUFFERS: libc::c_uint = 0;
pub const IORING_UNREGISTER_BUFFERS: libc::c_uint = 1;

/// `io_uring_setup(entries, &params)`: a ring used only to register buffers.
pub fn io_uring_setup(entries: u32) -> io::Result<OwnedFd> {
    // struct io_uring_params is 120 bytes (v5.1+ uapi); all-zero asks for defaults.
    let mut params = [0u8; 120];
    // SAFETY: `params` is a zeroed buffer of the size of struct io_uring_params,
    // which the kernel reads and fills in.
    let fd = cvt(unsafe { libc::syscall(SYS_IO_URING_SETUP, entries, params.as_mut_ptr()) })?;
    // SAFETY: a new descriptor returned by the kernel, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

pub fn io_uring_unregister_buffers(ring: RawFd) -> io::Result<()> {
    // SAFETY: no pointer is passed (arg NULL, nr 0).
    cvt(unsafe { libc::syscall(SYS_IO_URING_REGISTER, ring, IORING_UNREGISTER_BUFFERS, std::ptr::null::<u8>(), 0u32) })
        .map(|_| ())
}

pub enum Fork {
    Child,
    Parent(libc::pid_t),
}

/// `fork()`. The agent is single-threaded at every call site (the actor loop
/// and the main dispatcher never start threads), so the child may run any code.
pub fn fork() -> io::Result<Fork> {
    // SAFETY: the process is single-threaded when this is called (see above), so
    // the child inherits no lock held by another thread.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Fork::Child),
        pid => Ok(Fork::Parent(pid)),
    }
}

/// Terminate this process at once, without running destructors or flushing
/// stdio (what a forked child must do).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit is always safe to call; it never returns.
    unsafe { libc::_exit(code) }
}

/// `waitpid(pid, 0)`: the exit status, waiting for it.
pub fn wait_blocking(pid: libc::pid_t) -> i32 {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid int for the kernel to fill.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r >= 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return status;
        }
    }
}

/// `dup2(fd, target)` (the child side of output capture).
pub fn dup_onto(fd: RawFd, target: RawFd) -> io::Result<()> {
    // SAFETY: dup2 on descriptor numbers; no pointers. `target` is one of the
    // standard streams, which the caller means to replace.
    cvt(unsafe { libc::dup2(fd, target) } as libc::c_long).map(|_| ())
}

/// `waitpid(pid, WNOHANG)`: Some(status) if it has exited.
pub fn try_wait(pid: libc::pid_t) -> Option<(libc::pid_t, i32)> {
    let mut status = 0;
    // SAFETY: `status` is a valid int for the kernel to fill.
    let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    if r > 0 {
        Some((r, status))
    } else {
        None
    }
}

pub fn describe_status(status: i32) -> String {
    if libc::WIFEXITED(status) {
        format!("exited with status {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        format!("killed by signal {sig} ({})", signal_name(sig))
    } else {
        format!("wait status {status:#x}")
    }
}

pub fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGBUS => "SIGBUS",
        libc::SIGABRT => "SIGABRT",
        libc::SIGTERM => "SIGTERM",
        libc::SIGILL => "SIGILL",
        _ => "signal",
    }
}

pub fn mkfifo(path: &str) -> io::Result<()> {
    let c = cstr(path)?;
    // SAFETY: `c` is a valid NUL-terminated path.
    cvt(unsafe { libc::mkfifo(c.as_ptr(), 0o600) } as libc::c_long).map(|_| ())
}

/// `open(path, flags)` for FIFOs and device files with explicit flags.
pub fn open(path: &str, flags: libc::c_int, mode: libc::mode_t) -> io::Result<OwnedFd> {
    let c = cstr(path)?;
    // SAFETY: `c` is a valid NUL-terminated path; the mode is passed as the
    // variadic third argument open(2) expects.
    let fd = cvt(unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC, mode as libc::c_uint) } as libc::c_long)?;
    // SAFETY: a new descriptor returned by the kernel, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

pub fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor the caller owns; no pointers.
    let fl = cvt(unsafe { libc::fcntl(fd, libc::F_GETFL) } as libc::c_long)?;
    // SAFETY: as above.
    cvt(unsafe { libc::fcntl(fd, libc::F_SETFL, (fl as libc::c_int) | libc::O_NONBLOCK) } as libc::c_long).map(|_| ())
}

pub fn set_blocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor the caller owns; no pointers.
    let fl = cvt(unsafe { libc::fcntl(fd, libc::F_GETFL) } as libc::c_long)?;
    // SAFETY: as above.
    cvt(unsafe { libc::fcntl(fd, libc::F_SETFL, (fl as libc::c_int) & !libc::O_NONBLOCK) } as libc::c_long).map(|_| ())
}

/// `poll` on `fds` (readability) for up to `timeout_ms`; returns the revents.
pub fn poll_read(fds: &[RawFd], timeout_ms: i32) -> io::Result<Vec<libc::c_short>> {
    let mut pfds: Vec<libc::pollfd> =
        fds.iter().map(|&fd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 }).collect();
    // SAFETY: `pfds` is a valid array of `pfds.len()` pollfd structures.
    let r = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout_ms) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(vec![0; fds.len()]);
        }
        return Err(e);
    }
    Ok(pfds.iter().map(|p| p.revents).collect())
}

pub fn mount(src: &str, target: &str, fstype: &str, flags: libc::c_ulong, data: &str) -> io::Result<()> {
    let (s, t, f, d) = (cstr(src)?, cstr(target)?, cstr(fstype)?, cstr(data)?);
    // SAFETY: four valid NUL-terminated strings; `data` is a string option list
    // for every file system the agent mounts.
    cvt(unsafe { libc::mount(s.as_ptr(), t.as_ptr(), f.as_ptr(), flags, d.as_ptr().cast()) } as libc::c_long)
        .map(|_| ())
}

pub fn umount(target: &str) -> io::Result<()> {
    let t = cstr(target)?;
    // SAFETY: a valid NUL-terminated path.
    cvt(unsafe { libc::umount(t.as_ptr()) } as libc::c_long).map(|_| ())
}

/// `finit_module(fd, "", 0)`: load a kernel module from an open file.
pub fn finit_module(fd: RawFd, params: &str) -> io::Result<()> {
    let p = cstr(params)?;
    // SAFETY: a valid descriptor and a NUL-terminated parameter string.
    cvt(unsafe { libc::syscall(libc::SYS_finit_module, fd, p.as_ptr(), 0) }).map(|_| ())
}

pub fn fallocate(fd: RawFd, mode: libc::c_int, offset: i64, len: i64) -> io::Result<()> {
    // SAFETY: no pointers.
    cvt(unsafe { libc::fallocate(fd, mode, offset, len) } as libc::c_long).map(|_| ())
}

/// `ioctl(dst, FICLONE, src)`: make `dst` share all of `src`'s extents
/// (a reflink; XFS made with `-m reflink=1`).
pub fn ficlone(dst: RawFd, src: RawFd) -> io::Result<()> {
    // _IOW(0x94, 9, int) in include/uapi/linux/fs.h
    const FICLONE: libc::c_ulong = 0x4004_9409;
    // SAFETY: FICLONE takes the source descriptor as its integer argument; no
    // pointers.
    cvt(unsafe { libc::ioctl(dst, FICLONE as _, src) } as libc::c_long).map(|_| ())
}

pub fn ftruncate(fd: RawFd, len: i64) -> io::Result<()> {
    // SAFETY: no pointers.
    cvt(unsafe { libc::ftruncate(fd, len) } as libc::c_long).map(|_| ())
}

pub fn sync() {
    // SAFETY: no arguments.
    unsafe { libc::sync() }
}

pub fn power_off() -> ! {
    sync();
    // SAFETY: reboot(2) with a valid command; as PID 1 with CAP_SYS_BOOT it
    // does not return on success.
    unsafe {
        libc::reboot(libc::LINUX_REBOOT_CMD_POWER_OFF);
    }
    exit_now(0)
}

pub fn getpid() -> libc::pid_t {
    // SAFETY: no arguments, cannot fail.
    unsafe { libc::getpid() }
}

pub fn kill(pid: libc::pid_t, sig: libc::c_int) {
    // SAFETY: no pointers; a stale pid at worst gets ESRCH.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// Give the calling process a new session with `tty` as its controlling
/// terminal and standard streams (for the interactive shell).
pub fn become_session_leader_on(tty: RawFd) -> io::Result<()> {
    // SAFETY: setsid has no arguments; the ioctl takes an int argument (0 = do
    // not steal); dup2 on descriptors this process owns.
    unsafe {
        libc::setsid();
        cvt(libc::ioctl(tty, libc::TIOCSCTTY, 0) as libc::c_long)?;
        for fd in 0..3 {
            cvt(libc::dup2(tty, fd) as libc::c_long)?;
        }
    }
    Ok(())
}

/// `execv(path, argv)`; returns only on failure.
pub fn exec(argv: &[String]) -> io::Error {
    let Ok(cargs) = argv.iter().map(|a| cstr(a)).collect::<io::Result<Vec<_>>>() else {
        return io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in an argument");
    };
    if cargs.is_empty() {
        return io::Error::new(io::ErrorKind::InvalidInput, "empty argv");
    }
    let mut ptrs: Vec<*const libc::c_char> = cargs.iter().map(|c| c.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    let env: [*const libc::c_char; 3] = [
        c"PATH=/bin:/sbin:/usr/bin:/usr/sbin".as_ptr(),
        c"LD_LIBRARY_PATH=/lib/x86_64-linux-gnu".as_ptr(),
        std::ptr::null(),
    ];
    // SAFETY: `ptrs` and `env` are NULL-terminated arrays of valid C strings
    // that outlive the call (execve only returns on failure).
    unsafe {
        libc::execve(cargs[0].as_ptr(), ptrs.as_ptr(), env.as_ptr());
    }
    io::Error::last_os_error()
}
