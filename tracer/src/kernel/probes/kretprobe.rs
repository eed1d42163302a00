//! Kretprobes with a `maxactive` of our own. A kretprobe tracks at most `maxactive` calls of its
//! function at once; a call beyond that runs the entry program but not the return one, and its
//! record is lost. A kretprobe made through `perf_event_open` (aya 0.14's `KProbe::attach`)
//! gets the kernel's default: `num_possible_cpus()` without preemption (Debian's 5.10: 2 on a
//! 2-CPU machine), `max(10, 2 x that)` with it, which threads sleeping in mmap_lock easily
//! exceed (tests/tests/thread_race.rs lost records that way on 5.10). A kretprobe event made in
//! tracefs (`r4096:tracer_PID/mmap __x64_sys_mmap` in `kprobe_events`) takes the number, and
//! the program is attached to that event through a perf event of its own.

use std::{
    fs::OpenOptions,
    io::{self, Write},
    os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd},
    path::{Path, PathBuf},
};

use aya::programs::KProbe;

/// Calls each kretprobe tracks at once: the most `kprobe_events` accepts
/// (`KRETPROBE_MAXACTIVE_MAX`, kernel/trace/trace_kprobe.c).
pub const MAXACTIVE: u32 = 4096;

/// `_IOW('$', 8, __u32)` and `_IO('$', 0)` (include/uapi/linux/perf_event.h).
const PERF_EVENT_IOC_SET_BPF: libc::c_ulong = 0x4004_2408;
const PERF_EVENT_IOC_ENABLE: libc::c_ulong = 0x2400;
const PERF_TYPE_TRACEPOINT: u32 = 2;
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;
/// `PERF_ATTR_SIZE_VER0`: the fields up to `bp_addr`, all a tracepoint event needs.
const ATTR_SIZE: usize = 64;

/// A kretprobe event of ours in tracefs with a program attached. Dropping it closes the perf
/// event (detaching the program), then removes the event.
pub struct Kretprobe {
    perf: Option<OwnedFd>,
    events_file: PathBuf,
    /// `tracer_PID/NAME`.
    event: String,
}

impl Drop for Kretprobe {
    fn drop(&mut self) {
        // The kernel refuses to remove an event still open.
        drop(self.perf.take());
        remove_event(&self.events_file, &self.event);
    }
}

fn remove_event(events_file: &Path, event: &str) {
    let removed = OpenOptions::new()
        .append(true)
        .open(events_file)
        .and_then(|mut f| f.write_all(format!("-:{event}\n").as_bytes()));
    if let Err(err) = removed {
        log::debug!("cannot remove the kprobe event {event}: {err}");
    }
}

/// Removes the kretprobe events of tracers that died without removing theirs (group
/// `tracer_PID` with no process PID).
pub fn remove_stale(tracefs: &Path) {
    let events_file = tracefs.join("kprobe_events");
    let Ok(text) = std::fs::read_to_string(&events_file) else {
        return;
    };
    for line in text.lines() {
        // `r4096:tracer_123/mmap __x64_sys_mmap`
        let Some(event) = line
            .split_whitespace()
            .next()
            .and_then(|d| d.split_once(':'))
        else {
            continue;
        };
        let event = event.1;
        let Some(pid) = event
            .strip_prefix("tracer_")
            .and_then(|rest| rest.split_once('/'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            remove_event(&events_file, event);
        }
    }
}

/// Makes a kretprobe event `name` on `function` in the tracefs at `tracefs` with `MAXACTIVE`,
/// and attaches the loaded `program` to it.
pub fn attach(
    tracefs: &Path,
    program: &KProbe,
    function: &str,
    name: &str,
) -> io::Result<Kretprobe> {
    let group = format!("tracer_{}", std::process::id());
    let events_file = tracefs.join("kprobe_events");
    OpenOptions::new()
        .append(true)
        .open(&events_file)?
        .write_all(format!("r{MAXACTIVE}:{group}/{name} {function}\n").as_bytes())?;
    // From here on, an error return removes the event.
    let mut probe = Kretprobe {
        perf: None,
        events_file,
        event: format!("{group}/{name}"),
    };
    let id_file = tracefs.join("events").join(&group).join(name).join("id");
    let id: u64 = std::fs::read_to_string(&id_file)?
        .trim()
        .parse()
        .map_err(io::Error::other)?;
    let perf = probe.perf.insert(open_tracepoint(id)?).as_raw_fd();
    let prog = program.fd().map_err(io::Error::other)?.as_fd().as_raw_fd();
    // SAFETY: ioctls on a perf event we own, with an int argument (a program fd) or none.
    if unsafe { libc::ioctl(perf, PERF_EVENT_IOC_SET_BPF as _, prog) } < 0
        || unsafe { libc::ioctl(perf, PERF_EVENT_IOC_ENABLE as _, 0) } < 0
    {
        return Err(io::Error::last_os_error());
    }
    Ok(probe)
}

/// A perf event on tracepoint `id` (every process, one CPU: a BPF program attached to it runs
/// on every CPU, as for aya's tracepoints).
fn open_tracepoint(id: u64) -> io::Result<OwnedFd> {
    let mut attr = [0u8; ATTR_SIZE];
    attr[0..4].copy_from_slice(&PERF_TYPE_TRACEPOINT.to_ne_bytes());
    attr[4..8].copy_from_slice(&(ATTR_SIZE as u32).to_ne_bytes());
    attr[8..16].copy_from_slice(&id.to_ne_bytes());
    // sample_period 1, wakeup_events 1, as aya sets them.
    attr[16..24].copy_from_slice(&1u64.to_ne_bytes());
    attr[48..52].copy_from_slice(&1u32.to_ne_bytes());
    // SAFETY: `attr` is a perf_event_attr of the size it declares; the other arguments are
    // plain integers.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            attr.as_ptr(),
            -1 as libc::pid_t,
            0 as libc::c_int,
            -1 as libc::c_int,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}
