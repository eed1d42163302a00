//! One measurement: a workload run once, untraced or in one mode, and what came out of it.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::modes::{Mode, Tools, wrapped};
use super::procfs;
use crate::util::{describe, describe_status};

/// No single run may take longer than this (a hang is an error, not a slow result).
const RUN_LIMIT: Duration = Duration::from_secs(600);
/// How often a running tracer's CPU time and peak RSS are looked at.
const WATCH_PERIOD: Duration = Duration::from_millis(25);

/// What one run measured. `None`: the mode does not report it.
#[derive(Clone, Debug, Default)]
pub struct Sample {
    /// The workload's own elapsed time around its measured work.
    pub elapsed_ns: u64,
    /// CPU time of all its threads over the same work (its `cpu_ns=`, 0 if not printed).
    pub cpu_ns: u64,
    /// The work items it did (its `ops=`).
    pub ops: u64,
    /// Syscall events or records the tool saw.
    pub syscalls: Option<u64>,
    /// Page faults the tool saw or counted.
    pub faults: Option<u64>,
    /// Events or records the tool says it lost.
    pub lost: Option<u64>,
    /// The tracer printed a warning about lost records.
    pub warned: bool,
    /// CPU time of the tracer process (user + system), start-up and teardown included.
    pub daemon_cpu_s: Option<f64>,
    /// The tracer's peak RSS (VmHWM).
    pub daemon_hwm_kib: Option<u64>,
    /// `attach`: from starting the tracer to its "attached" line.
    pub startup: Option<Duration>,
    /// `--stacks`: stack samples the daemon took in (syscall samples + fault samples), and
    /// growing calls that got no stack, from its call-site summary.
    pub stack_samples: Option<u64>,
    pub unstacked: Option<u64>,
}

/// A child process killed and reaped if the measurement fails half-way.
pub struct Proc {
    pub child: Child,
    done: bool,
}

impl Proc {
    pub fn spawn(cmd: &mut Command) -> Result<Proc> {
        let child = cmd
            .spawn()
            .with_context(|| format!("could not start `{}`", describe(cmd)))?;
        Ok(Proc { child, done: false })
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the exit, looking at CPU time and peak RSS while it runs (`watch`): the CPU
    /// time is read once the process is a zombie, when it is complete but not yet reaped.
    pub fn finish(&mut self, watch: bool) -> Result<(ExitStatus, Usage)> {
        let pid = self.id();
        let start = Instant::now();
        let mut usage = Usage::default();
        loop {
            if watch {
                if let Some(kib) = procfs::status_kib(pid, "VmHWM") {
                    usage.hwm_kib = Some(kib);
                }
                match procfs::stat(pid) {
                    Some(stat) if stat.state == 'Z' => {
                        usage.cpu_s = Some(stat.cpu_ticks as f64 / procfs::clock_ticks());
                        break;
                    }
                    Some(_) => {}
                    None => break,
                }
            } else if self.child.try_wait()?.is_some() {
                break;
            }
            if start.elapsed() > RUN_LIMIT {
                bail!("process {pid} still runs after {RUN_LIMIT:?}");
            }
            thread::sleep(WATCH_PERIOD);
        }
        let status = self.child.wait()?;
        self.done = true;
        Ok((status, usage))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// CPU time and peak RSS of a watched process.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    pub cpu_s: Option<f64>,
    pub hwm_kib: Option<u64>,
}

/// Reads a pipe to its end on a thread.
pub fn read_all(pipe: Option<impl Read + Send + 'static>) -> JoinHandle<String> {
    thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_string(&mut text);
        }
        text
    })
}

/// Sends a pipe's lines, as they come, over a channel.
pub fn lines_of(pipe: Option<impl Read + Send + 'static>) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        if let Some(pipe) = pipe {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        }
    });
    rx
}

/// Waits for a line starting with `prefix`, keeping every line in `seen`. Fails when the
/// stream ends first (the process exited) or after `limit`.
pub fn wait_for_line(
    lines: &Receiver<String>,
    prefix: &str,
    seen: &mut String,
    limit: Duration,
) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                let found = line.starts_with(prefix);
                seen.push_str(&line);
                seen.push('\n');
                if found {
                    return Ok(());
                }
            }
            Err(RecvTimeoutError::Timeout) => bail!("no `{prefix}` line within {limit:?}"),
            Err(RecvTimeoutError::Disconnected) => {
                bail!("the output ended before a `{prefix}` line:\n{seen}")
            }
        }
    }
}

/// A sample with the workload's `elapsed_ns=N ops=M` line from its stdout.
pub fn from_stdout(stdout: &str) -> Result<Sample> {
    let line = stdout
        .lines()
        .find(|line| line.starts_with("elapsed_ns="))
        .with_context(|| format!("the workload printed no elapsed_ns= line: {stdout:?}"))?;
    let field = |name: &str| -> Option<u64> {
        line.split_whitespace()
            .find_map(|word| word.strip_prefix(name)?.strip_prefix('='))?
            .parse()
            .ok()
    };
    Ok(Sample {
        elapsed_ns: field("elapsed_ns").context("a bad elapsed_ns=")?,
        cpu_ns: field("cpu_ns").unwrap_or(0),
        ops: field("ops").unwrap_or(0),
        ..Sample::default()
    })
}

fn check(status: ExitStatus, what: &str, stderr: &str) -> Result<()> {
    if !status.success() {
        bail!(
            "{what} failed ({}): {}",
            describe_status(status),
            stderr.trim()
        );
    }
    Ok(())
}

/// Runs the workload untraced.
pub fn untraced(workload: &Path, args: &[&str]) -> Result<Sample> {
    let mut proc = Proc::spawn(
        Command::new(workload)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped()),
    )?;
    let stdout = read_all(proc.child.stdout.take());
    let (status, _) = proc.finish(false)?;
    check(status, &workload.display().to_string(), "")?;
    from_stdout(&stdout.join().unwrap_or_default())
}

/// Runs the workload in `mode`. Peers that print write into `scratch`, which is emptied after.
pub fn traced(
    mode: Mode,
    tools: &Tools,
    workload: &Path,
    args: &[&str],
    scratch: &Path,
) -> Result<Sample> {
    if mode == Mode::Attach {
        return attached(tools, workload, args);
    }
    let output = scratch.join("output");
    let mut cmd = wrapped(mode, tools, workload, args, &output);
    let described = describe(&cmd);
    let mut proc = Proc::spawn(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )?;
    let stdout = read_all(proc.child.stdout.take());
    let stderr = read_all(proc.child.stderr.take());
    let ours = matches!(mode, Mode::Run | Mode::RunStacks);
    let (status, usage) = proc.finish(ours)?;
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    check(status, &described, &stderr)?;
    let mut sample = from_stdout(&stdout)?;
    match mode {
        Mode::Run | Mode::RunStacks => {
            tracer_summary(&stderr, &mut sample)?;
            sample.daemon_cpu_s = usage.cpu_s;
            sample.daemon_hwm_kib = usage.hwm_kib;
            if mode == Mode::RunStacks {
                stack_summary(&stderr, &mut sample)?;
            }
        }
        Mode::Attach => unreachable!("handled above"),
        _ => peer_output(mode, &output, &stderr, &mut sample)?,
    }
    let _ = fs::remove_file(&output);
    Ok(sample)
}

/// `tracer attach`: the workload stops itself before its measured work (BENCH_STOP=1); the
/// tracer attaches to it; then it is resumed.
fn attached(tools: &Tools, workload: &Path, args: &[&str]) -> Result<Sample> {
    let mut target = Proc::spawn(
        Command::new(workload)
            .args(args)
            .env("BENCH_STOP", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped()),
    )?;
    let stdout = read_all(target.child.stdout.take());
    let pid = target.id();
    procfs::wait_stopped(pid, Duration::from_secs(30))?;
    let mut tracer = Attached::start(tools, &[pid], &["--no-listen"])?;
    procfs::signal(pid, "CONT")?;
    let (status, _) = target.finish(false)?;
    check(status, &workload.display().to_string(), "")?;
    // The tracer stops by itself once every target has exited.
    let (status, usage) = tracer.finish()?;
    check(status, "tracer attach", &tracer.stderr)?;
    let mut sample = from_stdout(&stdout.join().unwrap_or_default())?;
    sample.startup = Some(tracer.startup);
    sample.daemon_cpu_s = usage.cpu_s;
    sample.daemon_hwm_kib = usage.hwm_kib;
    tracer_summary(&tracer.stderr, &mut sample)?;
    Ok(sample)
}

/// A `tracer attach` that has said it is attached.
pub struct Attached {
    pub tracer: Proc,
    /// Its stderr so far; `finish` adds the rest.
    pub stderr: String,
    /// From starting it to its "attached" line.
    pub startup: Duration,
    lines: Receiver<String>,
}

impl Attached {
    /// Starts `tracer attach OPTIONS -p PID...` and waits until it says it is attached.
    pub fn start(tools: &Tools, pids: &[u32], options: &[&str]) -> Result<Attached> {
        let mut cmd = Command::new(&tools.tracer);
        cmd.arg("attach").args(&tools.tracer_args).args(options);
        for pid in pids {
            cmd.arg("-p").arg(pid.to_string());
        }
        let start = Instant::now();
        let mut tracer = Proc::spawn(
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped()),
        )?;
        let lines = lines_of(tracer.child.stderr.take());
        let mut stderr = String::new();
        wait_for_line(
            &lines,
            "tracer: attached to",
            &mut stderr,
            Duration::from_secs(60),
        )
        .context("tracer attach did not attach")?;
        Ok(Attached {
            tracer,
            stderr,
            startup: start.elapsed(),
            lines,
        })
    }

    /// Waits for the tracer to exit (watching its CPU time and peak RSS); its whole stderr is
    /// then in `stderr`.
    pub fn finish(&mut self) -> Result<(ExitStatus, Usage)> {
        let result = self.tracer.finish(true)?;
        for line in self.lines.iter() {
            self.stderr.push_str(&line);
            self.stderr.push('\n');
        }
        Ok(result)
    }
}

/// Reads the records seen and lost, and the faults counted, from the tracer's summary:
/// `tracer: N syscall records, F fork, E exec, X exit; lost L; decode errors D` and one
/// `  page faults T (...)` line per process.
pub fn tracer_summary(stderr: &str, sample: &mut Sample) -> Result<()> {
    let header = stderr
        .lines()
        .find(|line| line.starts_with("tracer: ") && line.contains(" syscall records, "))
        .with_context(|| format!("no summary header in the tracer's output:\n{stderr}"))?;
    let number_before = |word: &str| -> Option<u64> {
        let end = header.find(word)?;
        header[..end].split_whitespace().last()?.parse().ok()
    };
    let number_after = |word: &str| -> Option<u64> {
        let start = header.find(word)? + word.len();
        header[start..]
            .split(|c: char| !c.is_ascii_digit())
            .find(|s| !s.is_empty())?
            .parse()
            .ok()
    };
    sample.syscalls = number_before(" syscall records");
    sample.lost = number_after("lost ");
    sample.faults = Some(
        stderr
            .lines()
            .filter_map(|line| line.strip_prefix("  page faults "))
            .filter_map(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
            .sum(),
    );
    sample.warned = stderr
        .lines()
        .any(|line| line.contains("WARNING") && line.contains("lost"));
    Ok(())
}

/// The stack samples from the call-site summary of `--stacks`: `tracer: call sites (S syscall
/// samples, F fault samples, U growing calls without a stack):`.
pub fn stack_summary(stderr: &str, sample: &mut Sample) -> Result<()> {
    let header = stderr
        .lines()
        .find_map(|line| line.strip_prefix("tracer: call sites ("))
        .with_context(|| format!("no call-site summary in the tracer's output:\n{stderr}"))?;
    let before = |word: &str| -> Option<u64> {
        let end = header.find(word)?;
        header[..end].split_whitespace().last()?.parse().ok()
    };
    let (Some(syscall), Some(fault)) = (before(" syscall samples"), before(" fault samples"))
    else {
        bail!("cannot read the call-site summary: {header}");
    };
    sample.stack_samples = Some(syscall + fault);
    sample.unstacked = before(" growing calls");
    Ok(())
}

/// Events seen and lost, from what a peer wrote.
fn peer_output(mode: Mode, output: &Path, stderr: &str, sample: &mut Sample) -> Result<()> {
    let file = File::open(output).with_context(|| format!("{} wrote nothing", mode.column()))?;
    let mut syscalls = 0u64;
    let mut faults = 0u64;
    let mut lost = 0u64;
    let number = |text: &str| -> u64 {
        text.split(|c: char| !c.is_ascii_digit())
            .find(|s| !s.is_empty())
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    };
    for line in BufReader::new(file).lines() {
        let line = line?;
        match mode {
            // CSV: count,unit,event,...; "<not counted>" when the event never ran.
            Mode::PerfStat => {
                let fields: Vec<&str> = line.split(',').collect();
                if fields.len() < 3 {
                    continue;
                }
                let count: u64 = fields[0].parse().unwrap_or(0);
                if fields[2].starts_with("syscalls:sys_exit_") {
                    syscalls += count;
                } else if fields[2].starts_with("exceptions:") {
                    faults += count;
                }
            }
            Mode::BpftraceCount => {
                if let Some(rest) = line.strip_prefix("@syscalls:") {
                    syscalls += number(rest);
                } else if let Some(rest) = line.strip_prefix("@faults:") {
                    faults += number(rest);
                } else if line.starts_with("Lost ") {
                    lost += number(&line);
                }
            }
            Mode::BpftracePrint => {
                if line.starts_with("Lost ") {
                    lost += number(&line);
                } else if line.contains(" fault ") {
                    faults += 1;
                } else if line.starts_with(|c: char| c.is_ascii_digit()) {
                    syscalls += 1;
                }
            }
            Mode::PerfTrace => {
                if line.contains("LOST") {
                    lost += number(&line[line.find("LOST").unwrap_or(0)..]);
                } else if line.contains("minfault") || line.contains("majfault") {
                    faults += 1;
                } else if line.contains(" = ") || line.contains("...") {
                    syscalls += 1;
                }
            }
            Mode::Strace => {
                let event = !line.contains("resumed>")
                    && !line.contains("+++")
                    && !line.contains("---")
                    && line.contains('(');
                if event {
                    syscalls += 1;
                }
            }
            Mode::Run | Mode::RunStacks | Mode::Attach => {}
        }
    }
    for line in stderr.lines() {
        if line.starts_with("Lost ") || line.contains("LOST") {
            lost += number(&line[line.find(|c: char| c.is_ascii_digit()).unwrap_or(0)..]);
        }
    }
    // perf stat's tracepoint counts fall short of the events on some kernel and perf pairings
    // (seen with perf 6.1 on Linux 6.18): not shown rather than shown wrong.
    let counted = mode != Mode::PerfStat;
    sample.syscalls = counted.then_some(syscalls);
    sample.faults = (counted && mode != Mode::Strace).then_some(faults);
    sample.lost = (mode != Mode::Strace && mode != Mode::PerfStat).then_some(lost);
    Ok(())
}
