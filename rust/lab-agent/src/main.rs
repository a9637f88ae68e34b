//! zdfuzz-lab-agent: the in-guest half of `zdfuzz lab`.
//!
//! It runs as PID 1 of a QEMU guest booted from an initramfs the host built:
//! mounts /proc, /sys and /dev, loads the kernel modules the scenario needs
//! (`finit_module`), runs the set-up commands (`ndctl create-namespace`,
//! `mkfs`, `mount -o dax`), then the scenario's steps, and powers off. Every
//! step is reported as one JSON line on the second serial port (`/dev/ttyS1`),
//! kept apart from the kernel console on `ttyS0`, so kernel messages can never
//! split a report line.
//!
//! A step either returns (a value or an errno) or is still in the kernel when
//! its timeout expires: it is then reported as `blocked`, with the kernel stack
//! of the blocked process (`/proc/PID/stack`), and the scenario goes on; when
//! it returns later, a `late` record says during which step. That is how
//! "unbind waits for the pin" and "unbind completed" are told apart.
//!
//! Steps run in actor processes (stateful: files, mappings, pipes, io_uring;
//! `fork` creates a new actor from an existing one, sharing nothing but what
//! fork shares) or in one-shot task processes (sysfs writes, truncate,
//! commands). New kernel log records (`/dev/kmsg`) are reported after every
//! step; the host classifies them (WARN, BUG, Oops, KASAN, Bad page state...).

mod errno;
mod ops;
mod sys;

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const SCENARIO: &str = "/lab/scenario.json";
const REPORT_TTY: &str = "/dev/ttyS1";
const VERSION: &str = env!("CARGO_PKG_VERSION");
/// First lines of the kernel reports that make a guest suspect for the next
/// batch item (the host classifies them properly; this only counts).
const REPORT_MARKERS: [&str; 8] =
    ["BUG:", "WARNING:", "Oops", "KASAN", "Bad page", "INFO: task", "Kernel panic", "general protection fault"];

/// Where report lines go: the second serial port, or standard output when the
/// agent is run by hand outside a guest (`--scenario FILE`).
struct Reporter {
    out: Box<dyn Write>,
    /// The batch item being run, stamped on every record.
    item: Option<usize>,
}

impl Reporter {
    fn send(&mut self, mut v: Value) {
        v["ms"] = json!(uptime_ms());
        if let Some(k) = self.item {
            v["item"] = json!(k);
        }
        let mut line = v.to_string();
        line.push('\n');
        // The report channel is all the host sees; if it fails there is no
        // better place to say so than the console.
        if self.out.write_all(line.as_bytes()).and_then(|_| self.out.flush()).is_err() {
            eprintln!("zdfuzz-lab-agent: cannot write the report: {line}");
        }
    }
}

fn uptime_ms() -> u64 {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|t| t.parse::<f64>().ok()))
        .map(|s| (s * 1000.0) as u64)
        .unwrap_or(0)
}

/// A line-buffered reader of a non-blocking descriptor (a reply FIFO or pipe).
struct LineReader {
    file: File,
    buf: Vec<u8>,
    eof: bool,
}

impl LineReader {
    fn new(fd: OwnedFd) -> Self {
        LineReader { file: File::from(fd), buf: Vec::new(), eof: false }
    }

    /// Read what is available; return complete lines.
    fn pump(&mut self) -> Vec<String> {
        let mut chunk = [0u8; 4096];
        loop {
            match self.file.read(&mut chunk) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.eof = true;
                    break;
                }
            }
        }
        let mut lines = Vec::new();
        while let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=pos).collect();
            lines.push(String::from_utf8_lossy(&line[..line.len() - 1]).into_owned());
        }
        lines
    }
}

/// One process that runs steps: a named actor (lives across steps) or a
/// one-shot task (one step).
struct Runner {
    name: String,
    pid: libc::pid_t,
    cmd: Option<File>,
    reply: LineReader,
    /// The step it is executing, if any.
    busy: Option<usize>,
    /// The step it is executing was marked `@background`: the scenario
    /// races it on purpose, so settling after later steps does not wait
    /// for it (only a `wait` step does).
    background: bool,
    started: Instant,
    dead: bool,
}

/// Where actor FIFOs live: /run/zdlab in the guest; `$ZDLAB_RUN_DIR` when
/// the agent runs by hand (its tests run it as an ordinary process).
fn run_dir() -> String {
    std::env::var("ZDLAB_RUN_DIR").unwrap_or_else(|_| "/run/zdlab".to_string())
}

fn fifo_paths(name: &str) -> (String, String) {
    let d = run_dir();
    (format!("{d}/{name}.cmd"), format!("{d}/{name}.reply"))
}

/// The actor loop: read a command line, run it, write a reply line. Runs in a
/// forked process that has opened its FIFOs.
fn actor_loop(name: &str, mut state: ops::State) -> ! {
    let (cmd_path, reply_path) = fifo_paths(name);
    let (cmd, mut reply) = match open_actor_fifos(&cmd_path, &reply_path) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("actor {name}: cannot open its FIFOs: {e}");
            sys::exit_now(1)
        }
    };
    let mut reader = io::BufReader::new(cmd);
    let mut line = String::new();
    loop {
        line.clear();
        match io::BufRead::read_line(&mut reader, &mut line) {
            Ok(0) | Err(_) => sys::exit_now(0),
            Ok(_) => {}
        }
        let msg: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        let i = msg.get("i").cloned().unwrap_or(Value::Null);
        let op = msg.get("op").and_then(Value::as_str).unwrap_or("");
        let args = msg.get("args").cloned().unwrap_or(Value::Null);
        let mut out = match op {
            "fork" => {
                let child = args.get("child").and_then(Value::as_str).unwrap_or("").to_string();
                match sys::fork() {
                    Ok(sys::Fork::Child) => {
                        drop(reader);
                        drop(reply);
                        actor_loop(&child, state)
                    }
                    Ok(sys::Fork::Parent(pid)) => {
                        json!({"status": "ok", "detail": format!("forked {child} (pid {pid})"), "pid": pid})
                    }
                    Err(e) => ops::err(&e, "fork"),
                }
            }
            "exit" => {
                let _ = writeln!(reply, "{}", json!({"i": i, "status": "ok", "detail": "exiting"}));
                sys::exit_now(0)
            }
            _ => state.run(op, &args),
        };
        out["i"] = i;
        if writeln!(reply, "{out}").is_err() {
            sys::exit_now(0);
        }
    }
}

/// The actor's side of its FIFOs: the reply FIFO for writing (the main agent
/// has already opened its read end, so this cannot block), then the command
/// FIFO for reading, blocking until the main agent opens its write end; a read
/// of a FIFO nobody has opened for writing would return end-of-file at once.
fn open_actor_fifos(cmd: &str, reply: &str) -> io::Result<(File, File)> {
    let r = sys::open(reply, libc::O_WRONLY | libc::O_NONBLOCK, 0)?;
    sys::set_blocking(r.as_raw_fd())?;
    let c = sys::open(cmd, libc::O_RDONLY, 0)?;
    Ok((File::from(c), File::from(r)))
}

struct Agent {
    rep: Reporter,
    runners: Vec<Runner>,
    kmsg: Option<File>,
    step_timeout: Duration,
    settle_time: Duration,
    /// Kernel reports (BUG, WARNING, Oops, KASAN...) read during this item.
    reports: usize,
}

impl Agent {
    fn actor(&self, name: &str) -> Option<usize> {
        self.runners.iter().position(|r| r.name == name && r.cmd.is_some() && !r.dead)
    }

    /// Make FIFOs for a new actor and open the main agent's read end, before the
    /// process that will become the actor exists.
    fn prepare_actor(name: &str) -> io::Result<OwnedFd> {
        let (cmd, reply) = fifo_paths(name);
        let _ = std::fs::remove_file(&cmd);
        let _ = std::fs::remove_file(&reply);
        sys::mkfifo(&cmd)?;
        sys::mkfifo(&reply)?;
        sys::open(&reply, libc::O_RDONLY | libc::O_NONBLOCK, 0)
    }

    /// Open the command FIFO's write end once the actor waits in its open of
    /// the read end (ENXIO until then), for at most 5 s.
    fn connect_actor(name: &str, pid: libc::pid_t, reply: OwnedFd) -> io::Result<Runner> {
        let (cmd, _) = fifo_paths(name);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match sys::open(&cmd, libc::O_WRONLY | libc::O_NONBLOCK, 0) {
                Ok(fd) => {
                    sys::set_blocking(fd.as_raw_fd())?;
                    return Ok(Runner {
                        name: name.to_string(),
                        pid,
                        cmd: Some(File::from(fd)),
                        reply: LineReader::new(reply),
                        busy: None,
                        background: false,
                        started: Instant::now(),
                        dead: false,
                    });
                }
                Err(e) if e.raw_os_error() == Some(libc::ENXIO) && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn spawn_first_actor(&mut self, name: &str) -> io::Result<()> {
        let reply = Self::prepare_actor(name)?;
        match sys::fork()? {
            sys::Fork::Child => {
                drop(reply);
                actor_loop(name, ops::State::default())
            }
            sys::Fork::Parent(pid) => {
                let r = Self::connect_actor(name, pid, reply)?;
                self.runners.push(r);
                Ok(())
            }
        }
    }

    /// A one-shot process for one stateless step; its reply comes on a pipe.
    fn spawn_task(&mut self, i: usize, op: &str, args: &Value) -> io::Result<()> {
        let (r, mut w) = sys::pipe().map(|(r, w)| (r, File::from(w)))?;
        match sys::fork()? {
            sys::Fork::Child => {
                drop(r);
                let mut out = ops::State::default().run(op, args);
                out["i"] = json!(i);
                let _ = writeln!(w, "{out}");
                sys::exit_now(0)
            }
            sys::Fork::Parent(pid) => {
                drop(w);
                set_nonblocking(&r);
                self.runners.push(Runner {
                    name: format!("task{i}"),
                    pid,
                    cmd: None,
                    reply: LineReader::new(r),
                    busy: Some(i),
                    background: false,
                    started: Instant::now(),
                    dead: false,
                });
                Ok(())
            }
        }
    }

    fn drain_kmsg(&mut self, after: &str) {
        self.drain_kmsg_max_prio(after, 7);
    }

    /// Report new kernel log records of priority `max_prio` or more urgent.
    fn drain_kmsg_max_prio(&mut self, after: &str, max_prio: u32) {
        let Some(k) = self.kmsg.as_mut() else { return };
        let mut buf = vec![0u8; 8192];
        let mut lines = Vec::new();
        loop {
            // /dev/kmsg returns one record per read: "prio,seq,usec,flags;text\n"
            // followed by continuation lines starting with a space.
            match k.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let rec = String::from_utf8_lossy(&buf[..n]).into_owned();
                    let (head, body) = rec.split_once(';').unwrap_or(("", rec.as_str()));
                    let mut f = head.split(',');
                    let prio = f.next().and_then(|p| p.parse::<u32>().ok()).unwrap_or(6) & 7;
                    let _seq = f.next();
                    let usec = f.next().and_then(|u| u.parse::<u64>().ok()).unwrap_or(0);
                    let text = body.lines().next().unwrap_or("").to_string();
                    if REPORT_MARKERS.iter().any(|m| text.contains(m)) {
                        self.reports += 1;
                    }
                    if prio <= max_prio {
                        lines.push(json!({"prio": prio, "usec": usec, "text": text}));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue, // overwritten records
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        if !lines.is_empty() {
            self.rep.send(json!({"t": "kmsg", "after": after, "lines": lines}));
        }
    }

    /// Collect replies and deaths; report completions of steps other than
    /// `current` as late. Returns the reply to `current` if it came.
    /// Is a step still in the kernel that settling should wait for (any but
    /// a background one)?
    fn settling_on(&self) -> bool {
        self.runners.iter().any(|r| r.busy.is_some() && !r.dead && !r.background)
    }

    fn collect(&mut self, current: Option<usize>, timeout: Duration) -> Option<Value> {
        self.collect_until(current, timeout, false)
    }

    /// After step `i` returned: give steps still in the kernel up to `settle`
    /// to finish, so a completion the step caused (a put that wakes a waiter)
    /// is reported as happening during step `i`, not during a later one.
    fn settle(&mut self, i: usize, settle: Duration) {
        if self.settling_on() {
            self.collect_until(Some(i), settle, true);
        }
    }

    fn collect_until(&mut self, current: Option<usize>, timeout: Duration, until_idle: bool) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut got = None;
            for idx in 0..self.runners.len() {
                let lines = self.runners[idx].reply.pump();
                for line in lines {
                    let mut v: Value = serde_json::from_str(&line)
                        .unwrap_or_else(|_| json!({"status": "error", "errno": "EPROTO", "detail": line}));
                    let i = v.get("i").and_then(Value::as_u64).map(|i| i as usize);
                    let r = &mut self.runners[idx];
                    if i.is_some() && r.busy == i {
                        r.busy = None;
                    }
                    let elapsed = r.started.elapsed().as_millis() as u64;
                    v["elapsed_ms"] = json!(elapsed);
                    if i.is_some() && i == current {
                        got = Some(v);
                    } else {
                        v["t"] = json!("late");
                        v["during"] = json!(current);
                        self.rep.send(v);
                    }
                }
                let r = &mut self.runners[idx];
                if r.reply.eof && !r.dead {
                    r.dead = true;
                    let status = wait_for_exit(r.pid);
                    if let Some(i) = r.busy.take() {
                        let v = json!({"i": i, "status": "died", "detail": format!("{} {}", r.name, status), "elapsed_ms": r.started.elapsed().as_millis() as u64});
                        if Some(i) == current {
                            got = Some(v);
                        } else {
                            let mut v = v;
                            v["t"] = json!("late");
                            v["during"] = json!(current);
                            self.rep.send(v);
                        }
                    } else if r.cmd.is_some() {
                        self.rep.send(json!({"t": "actor_exit", "actor": r.name, "detail": status}));
                    }
                }
            }
            reap_orphans();
            if got.is_some() {
                return got;
            }
            if until_idle && !self.settling_on() {
                return None;
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            let fds: Vec<i32> = self.runners.iter().filter(|r| !r.dead).map(|r| r.reply.file.as_raw_fd()).collect();
            let wait = (deadline - now).as_millis().min(200) as i32;
            if fds.is_empty() {
                std::thread::sleep(Duration::from_millis(wait as u64));
            } else {
                let _ = sys::poll_read(&fds, wait);
            }
        }
    }

    fn blocked_record(&self, i: usize) -> Value {
        let r = self.runners.iter().find(|r| r.busy == Some(i));
        let (pid, who) = r.map(|r| (r.pid, r.name.clone())).unwrap_or((0, String::new()));
        json!({
            "t": "step", "i": i, "status": "blocked",
            "after_ms": self.step_timeout.as_millis() as u64,
            "runner": who,
            "wchan": std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default(),
            "stack": std::fs::read_to_string(format!("/proc/{pid}/stack")).unwrap_or_default(),
        })
    }

    fn run_step(&mut self, i: usize, step: &Value) {
        let op = step.get("op").and_then(Value::as_str).unwrap_or("").to_string();
        let args = step.get("args").cloned().unwrap_or(json!({}));
        let actor = step.get("actor").and_then(Value::as_str).unwrap_or("-").to_string();
        let timeout =
            step.get("timeout_ms").and_then(Value::as_u64).map(Duration::from_millis).unwrap_or(self.step_timeout);
        let background = step.get("background").and_then(Value::as_bool).unwrap_or(false);
        let start = Instant::now();

        if op == "wait" {
            // Wait for a step in progress (or every one) to finish; what
            // finishes meanwhile is reported as happening during this step.
            let target = args.get("step").and_then(Value::as_u64).map(|s| s as usize);
            let busy = |a: &Agent| {
                a.runners.iter().any(|r| !r.dead && r.busy.is_some() && (target.is_none() || r.busy == target))
            };
            let deadline = Instant::now() + timeout;
            while busy(self) && Instant::now() < deadline {
                self.collect(Some(i), Duration::from_millis(100));
            }
            let v = if busy(self) {
                json!({"t": "step", "i": i, "status": "ok", "detail": "still in progress when the wait timed out"})
            } else {
                json!({"t": "step", "i": i, "status": "ok", "detail": "nothing in progress"})
            };
            self.rep.send(v);
            self.settle(i, self.settle_time);
            self.drain_kmsg(&i.to_string());
            return;
        }

        if actor == "-" || actor.is_empty() {
            if let Err(e) = self.spawn_task(i, &op, &args) {
                self.rep.send(json!({"t": "step", "i": i, "status": "error", "errno": errno::of(&e), "detail": format!("fork a task: {e}")}));
                return;
            }
            if let Some(r) = self.runners.last_mut() {
                r.background = background;
            }
        } else {
            if op == "fork" {
                let child = args.get("child").and_then(Value::as_str).unwrap_or("").to_string();
                if child.is_empty() || self.actor(&child).is_some() {
                    self.rep.send(json!({"t": "step", "i": i, "status": "error", "errno": "EINVAL", "detail": format!("fork needs a new actor name, got {child:?}")}));
                    return;
                }
            }
            let Some(idx) = self.actor(&actor) else {
                self.rep.send(json!({"t": "step", "i": i, "status": "error", "errno": "ESRCH", "detail": format!("no live actor named {actor}")}));
                return;
            };
            if let Some(b) = self.runners[idx].busy {
                // Give the actor's earlier step the step timeout to finish.
                self.collect(None, timeout);
                if self.runners[idx].busy.is_some() {
                    self.rep.send(json!({"t": "step", "i": i, "status": "skipped", "detail": format!("actor {actor} is still blocked in step {b}")}));
                    return;
                }
            }
            let fork_reply = if op == "fork" {
                let child = args.get("child").and_then(Value::as_str).unwrap_or("").to_string();
                match Self::prepare_actor(&child) {
                    Ok(fd) => Some((child, fd)),
                    Err(e) => {
                        self.rep.send(json!({"t": "step", "i": i, "status": "error", "errno": errno::of(&e), "detail": format!("mkfifo: {e}")}));
                        return;
                    }
                }
            } else {
                None
            };
            let msg = json!({"i": i, "op": op, "args": args});
            let r = &mut self.runners[idx];
            r.busy = Some(i);
            r.background = background;
            r.started = Instant::now();
            let sent = r.cmd.as_mut().map(|c| writeln!(c, "{msg}").and_then(|_| c.flush()));
            if !matches!(sent, Some(Ok(()))) {
                r.busy = None;
                self.rep.send(json!({"t": "step", "i": i, "status": "error", "errno": "EPIPE", "detail": format!("actor {actor} is gone")}));
                return;
            }
            if let Some((child, reply_fd)) = fork_reply {
                let v = self.collect(Some(i), timeout);
                match v {
                    Some(mut v) => {
                        if v["status"] == "ok" {
                            let pid = v.get("pid").and_then(Value::as_i64).unwrap_or(0) as libc::pid_t;
                            match Self::connect_actor(&child, pid, reply_fd) {
                                Ok(runner) => self.runners.push(runner),
                                Err(e) => {
                                    v = json!({"status": "error", "errno": errno::of(&e), "detail": format!("connect to {child}: {e}")});
                                }
                            }
                        }
                        v["t"] = json!("step");
                        v["i"] = json!(i);
                        self.rep.send(v);
                    }
                    None => self.rep.send(self.blocked_record(i)),
                }
                self.drain_kmsg(&i.to_string());
                return;
            }
        }
        let remaining = timeout.saturating_sub(start.elapsed());
        match self.collect(Some(i), remaining) {
            Some(mut v) => {
                if op == "exit" && v["status"] == "ok" {
                    // The actor answers before it calls _exit; the step is
                    // over when the process has really exited (its files
                    // released: a device file's ->release can take long).
                    if let Some(pid) = self.runners.iter().find(|r| r.name == actor).map(|r| r.pid) {
                        let left = timeout.saturating_sub(start.elapsed());
                        if !wait_gone(pid, left) {
                            v["detail"] = json!("replied, but still exiting when the step timed out");
                        }
                    }
                }
                v["t"] = json!("step");
                v["i"] = json!(i);
                self.rep.send(v);
                self.settle(i, self.settle_time);
            }
            None => {
                let rec = self.blocked_record(i);
                self.rep.send(rec);
            }
        }
        self.drain_kmsg(&i.to_string());
    }
}

impl Agent {
    /// Run an item's set-up commands (a failure stops it).
    fn run_setup(&mut self, item: &Value) -> bool {
        let setup = item.get("setup").and_then(Value::as_array).cloned().unwrap_or_default();
        for (k, s) in setup.iter().enumerate() {
            let argv: Vec<String> = s
                .get("argv")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect())
                .unwrap_or_default();
            let mut v = if argv.is_empty() {
                let op = s.get("op").and_then(Value::as_str).unwrap_or("");
                ops::State::default().run(op, s.get("args").unwrap_or(&Value::Null))
            } else {
                ops::exec_capture(&argv)
            };
            v["t"] = json!("setup");
            v["k"] = json!(k);
            let failed = v["status"] != "ok";
            self.rep.send(v);
            self.drain_kmsg(&format!("setup{k}"));
            if failed {
                return false;
            }
        }
        true
    }

    /// Start the item's actors, run its steps, let blocked ones finish.
    fn run_item(&mut self, item: &Value) -> &'static str {
        let actors: Vec<String> = item
            .get("actors")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect())
            .unwrap_or_default();
        for a in &actors {
            if let Err(e) = self.spawn_first_actor(a) {
                self.rep.send(json!({"t": "fatal", "detail": format!("cannot start actor {a}: {e}")}));
                return "fatal";
            }
        }
        let steps = item.get("steps").and_then(Value::as_array).cloned().unwrap_or_default();
        for (i, step) in steps.iter().enumerate() {
            self.run_step(i, step);
        }
        let final_wait = Duration::from_millis(item.get("final_wait_ms").and_then(Value::as_u64).unwrap_or(2000));
        if self.runners.iter().any(|r| r.busy.is_some()) {
            self.collect(None, final_wait);
        }
        let still: Vec<Value> = self.runners.iter().filter_map(|r| r.busy).map(|i| self.blocked_record(i)).collect();
        self.drain_kmsg("end");
        self.rep.send(json!({"t": "end", "still_blocked": still}));
        // Close command channels so idle actors exit; blocked ones stay.
        for r in self.runners.iter_mut() {
            r.cmd = None;
        }
        self.collect(None, Duration::from_millis(300));
        self.drain_kmsg("exit");
        "ok"
    }

    /// Between batch items: kill what is left of the item's processes, run
    /// its tear-down, and say why the kernel is suspect if it is.
    fn clear_item(&mut self, item: &Value) -> Option<String> {
        for r in &self.runners {
            if !r.dead {
                sys::kill(r.pid, libc::SIGKILL);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline && self.runners.iter().any(|r| !r.dead) {
            self.collect(None, Duration::from_millis(100));
        }
        reap_orphans();
        let stuck: Vec<String> = self.runners.iter().filter(|r| !r.dead).map(|r| r.name.clone()).collect();
        self.runners.clear();
        for s in item.get("teardown").and_then(Value::as_array).cloned().unwrap_or_default() {
            let argv: Vec<String> = s
                .as_array()
                .map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect())
                .unwrap_or_default();
            if !argv.is_empty() {
                let mut v = ops::exec_capture(&argv);
                v["t"] = json!("teardown");
                self.rep.send(v);
            }
        }
        self.drain_kmsg("teardown");
        if !stuck.is_empty() {
            return Some(format!("processes that cannot be killed: {}", stuck.join(", ")));
        }
        if self.reports > 0 {
            return Some(format!("the kernel printed {} report(s)", self.reports));
        }
        None
    }
}

fn set_nonblocking(fd: &OwnedFd) {
    // Failure would only make reads block until the step replies, which the
    // poll loop tolerates.
    let _ = sys::set_nonblocking(fd.as_raw_fd());
}

/// Wait until `pid` has exited (a zombie, or reaped), for at most `timeout`.
fn wait_gone(pid: libc::pid_t, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| rest.chars().next().unwrap_or('?')));
        if matches!(state, None | Some('Z') | Some('X')) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        reap_orphans();
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn wait_for_exit(pid: libc::pid_t) -> String {
    for _ in 0..50 {
        if let Some((_, status)) = sys::try_wait(pid) {
            return sys::describe_status(status);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    "closed its reply channel".to_string()
}

/// Orphans (children of exited actors) are re-parented to PID 1: reap them.
fn reap_orphans() {
    while sys::try_wait(-1).is_some() {}
}

fn mount_basics() {
    for (src, dir, fs) in [("proc", "/proc", "proc"), ("sysfs", "/sys", "sysfs"), ("devtmpfs", "/dev", "devtmpfs")] {
        let _ = std::fs::create_dir_all(dir);
        let _ = sys::mount(src, dir, fs, 0, "");
    }
    let _ = std::fs::create_dir_all("/mnt");
    let _ = std::fs::create_dir_all("/tmp");
}

fn load_modules(rep: &mut Reporter, modules: &[Value]) -> bool {
    for m in modules {
        let name = m.get("name").and_then(Value::as_str).unwrap_or("");
        let params = m.get("params").and_then(Value::as_str).unwrap_or("");
        let path = format!("/lib/modules/{name}.ko");
        let r = File::open(&path).and_then(|f| sys::finit_module(f.as_raw_fd(), params));
        match r {
            Ok(()) => rep.send(json!({"t": "module", "name": name, "status": "ok"})),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                rep.send(json!({"t": "module", "name": name, "status": "ok", "detail": "already loaded"}))
            }
            Err(e) => {
                rep.send(json!({"t": "module", "name": name, "status": "error", "errno": errno::of(&e), "detail": e.to_string()}));
                return false;
            }
        }
    }
    true
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string()
}

fn run_shell() {
    match sys::fork() {
        Ok(sys::Fork::Child) => {
            let tty = match sys::open("/dev/ttyS0", libc::O_RDWR, 0) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("shell: cannot open /dev/ttyS0: {e}");
                    sys::exit_now(1)
                }
            };
            let raw = tty.as_raw_fd();
            // The descriptor must survive exec (open() sets O_CLOEXEC) only as 0-2.
            if let Err(e) = sys::become_session_leader_on(raw) {
                eprintln!("shell: cannot take /dev/ttyS0 as the controlling terminal: {e}");
            }
            let e = sys::exec(&["/bin/sh".to_string(), "-l".to_string()]);
            eprintln!("shell: exec /bin/sh: {e}");
            sys::exit_now(127)
        }
        Ok(sys::Fork::Parent(pid)) => {
            sys::wait_blocking(pid);
        }
        Err(e) => eprintln!("shell: fork: {e}"),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let pid1 = sys::getpid() == 1;
    let scenario_path = match args.iter().position(|a| a == "--scenario") {
        Some(k) => args.get(k + 1).cloned().unwrap_or_default(),
        None => SCENARIO.to_string(),
    };
    if args.iter().any(|a| a == "--version") {
        println!("zdfuzz-lab-agent {VERSION}");
        return;
    }
    if pid1 {
        mount_basics();
    }
    let _ = std::fs::create_dir_all(run_dir());
    let out: Box<dyn Write> = if pid1 {
        match std::fs::OpenOptions::new().write(true).open(REPORT_TTY) {
            Ok(f) => Box::new(f),
            Err(e) => {
                eprintln!("zdfuzz-lab-agent: cannot open {REPORT_TTY}: {e}; reporting on the console");
                Box::new(io::stdout())
            }
        }
    } else {
        Box::new(io::stdout())
    };
    let mut rep = Reporter { out, item: None };
    let finish = |rep: &mut Reporter, status: &str| {
        rep.send(json!({"t": "done", "status": status}));
        if pid1 {
            sys::power_off();
        }
    };
    let scenario: Value = match std::fs::read_to_string(&scenario_path)
        .map_err(|e| e.to_string())
        .and_then(|s| serde_json::from_str(&s).map_err(|e| e.to_string()))
    {
        Ok(v) => v,
        Err(e) => {
            rep.send(json!({"t": "hello", "agent": VERSION, "kernel": kernel_release()}));
            rep.send(json!({"t": "fatal", "detail": format!("cannot read {scenario_path}: {e}")}));
            finish(&mut rep, "fatal");
            return;
        }
    };
    rep.send(json!({"t": "hello", "agent": VERSION, "kernel": kernel_release(), "scenario": scenario.get("name").cloned().unwrap_or(Value::Null)}));
    // The guest's kernel log; outside a guest only with --kmsg (the host's
    // log is not the scenario's business).
    let kmsg = if pid1 || args.iter().any(|a| a == "--kmsg") {
        File::open("/dev/kmsg").ok().inspect(|k| {
            let _ = sys::set_nonblocking(k.as_raw_fd());
        })
    } else {
        None
    };
    let step_timeout = Duration::from_millis(scenario.get("step_timeout_ms").and_then(Value::as_u64).unwrap_or(5000));
    let settle_time = Duration::from_millis(scenario.get("settle_ms").and_then(Value::as_u64).unwrap_or(1000));
    let mut agent = Agent { rep, runners: Vec::new(), kmsg, step_timeout, settle_time, reports: 0 };
    // Boot messages: only warnings and worse are worth a report line.
    agent.drain_kmsg_max_prio("boot", if pid1 { 4 } else { 0 });

    let modules = scenario.get("modules").and_then(Value::as_array).cloned().unwrap_or_default();
    if !load_modules(&mut agent.rep, &modules) {
        agent.drain_kmsg("modules");
        finish(&mut agent.rep, "setup-failed");
        return;
    }
    agent.drain_kmsg("modules");

    if scenario.get("shell").and_then(Value::as_bool).unwrap_or(false) {
        if !agent.run_setup(&scenario) {
            finish(&mut agent.rep, "setup-failed");
            return;
        }
        agent.rep.send(json!({"t": "shell"}));
        run_shell();
        agent.drain_kmsg("shell");
        finish(&mut agent.rep, "ok");
        return;
    }

    // A batch: several scenarios in one boot (the model-guided fuzzer), each
    // with its own set-up and tear-down; the batch stops at the first item
    // that leaves the kernel suspect (a kernel report, a process that cannot
    // be killed), and the host runs the rest in a fresh guest.
    if let Some(items) = scenario.get("batch").and_then(Value::as_array) {
        for (k, item) in items.iter().enumerate() {
            agent.rep.item = Some(k);
            agent.reports = 0;
            agent.rep.send(json!({"t": "item", "name": item.get("name").cloned().unwrap_or(Value::Null)}));
            let status = if agent.run_setup(item) { agent.run_item(item) } else { "setup-failed" };
            let tainted = agent.clear_item(item);
            agent.rep.send(json!({"t": "item_end", "status": status, "tainted": tainted}));
            agent.rep.item = None;
            if let Some(why) = tainted {
                agent.rep.send(json!({"t": "tainted", "item": k, "detail": why}));
                break;
            }
        }
        finish(&mut agent.rep, "ok");
        return;
    }

    if !agent.run_setup(&scenario) {
        finish(&mut agent.rep, "setup-failed");
        return;
    }
    let status = agent.run_item(&scenario);
    finish(&mut agent.rep, status);
}
