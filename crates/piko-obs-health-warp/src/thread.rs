//! The probe server's own thread: a current-thread tokio runtime that does the whole
//! answer to a probe (accept, read, probes, write) on one thread, and a scheduling
//! policy asked for that thread, so that a probe arriving while the application keeps
//! every core busy is run at once rather than after the running tasks' slices.
//!
//! Where the process may (`CAP_SYS_NICE`, as root outside a container), the thread runs
//! under `SCHED_DEADLINE` (`sched(7)`): a budget of [`PROBE_THREAD_RUNTIME`] of CPU
//! every [`PROBE_THREAD_PERIOD`], which the kernel gives it as soon as it wakes, ahead
//! of every ordinary thread, and never more than that budget, so that a flood of
//! requests to the probe port takes at most a fifth of one core from the application.
//! Threads the probe thread starts (a probe's `spawn_blocking` work) get the ordinary
//! policy (`SCHED_FLAG_RESET_ON_FORK`). Elsewhere the thread asks for a short time slice.
//!
//! Since Linux 6.12 the EEVDF scheduler lets a `SCHED_OTHER` thread suggest its own
//! time slice with `sched_setattr(2)` (`sched_attr.sched_runtime`, clamped to
//! 0.1-100 ms, no privilege needed). A thread with a shorter slice gets an earlier
//! virtual deadline when it wakes, and may preempt the running thread at once
//! (`PREEMPT_SHORT`); it still gets no more than its fair share of the CPU. Where the
//! kernel refuses or ignores the request, the thread keeps the default slice and the
//! server runs as before.

use std::time::Duration;

/// The time slice the probe server's own thread asks the kernel for: the shortest the
/// kernel grants (0.1 ms). A probe's answer takes tens of microseconds of CPU, so it
/// fits in one slice; the thread is asleep the rest of the time.
pub const PROBE_THREAD_SLICE: Duration = Duration::from_micros(100);

/// The CPU time the probe server's own thread may use in each [`PROBE_THREAD_PERIOD`]
/// when it runs under `SCHED_DEADLINE`: 2 ms, a fifth of a core. An answer to a probe
/// takes tens of microseconds; a `/metrics` render of thousands of series takes
/// milliseconds, and goes on in the next period when the budget is spent.
pub const PROBE_THREAD_RUNTIME: Duration = Duration::from_millis(2);

/// The period of the probe server's thread's `SCHED_DEADLINE` budget (and its relative
/// deadline): 10 ms.
pub const PROBE_THREAD_PERIOD: Duration = Duration::from_millis(10);

/// The name of the probe server's own thread.
pub(crate) const THREAD_NAME: &str = "piko-obs-probes";

/// Where and how the probe server runs: [`RunningServer::scheduling`](crate::RunningServer::scheduling).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Scheduling {
    /// On the tokio runtime [`ServerBuilder::start`](crate::ServerBuilder::start) was
    /// called in, beside that runtime's other tasks.
    SharedRuntime,
    /// On a thread of its own ([`ServerBuilder::start_on_own_thread`](crate::ServerBuilder::start_on_own_thread)),
    /// with the short time slice it asked for.
    ShortSlice(Duration),
    /// On a thread of its own under `SCHED_DEADLINE`: `runtime` of CPU every `period`,
    /// given as soon as the thread wakes ([`PROBE_THREAD_RUNTIME`],
    /// [`PROBE_THREAD_PERIOD`]).
    Deadline {
        /// The CPU time the thread may use in each period.
        runtime: Duration,
        /// The period, which is also the deadline.
        period: Duration,
    },
    /// On a thread of its own with the kernel's default time slice, because the kernel
    /// refused or ignored the shorter one: why (Linux older than 6.12, a seccomp filter,
    /// a real-time policy, not Linux).
    DefaultSlice(String),
}

impl std::fmt::Display for Scheduling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scheduling::SharedRuntime => f.write_str("on the caller's runtime"),
            Scheduling::ShortSlice(slice) => {
                write!(f, "own thread, {} ms time slice", slice.as_secs_f64() * 1e3)
            }
            Scheduling::DefaultSlice(why) => {
                write!(f, "own thread, default time slice ({why})")
            }
            Scheduling::Deadline { runtime, period } => write!(
                f,
                "own thread, SCHED_DEADLINE {} ms every {} ms",
                runtime.as_secs_f64() * 1e3,
                period.as_secs_f64() * 1e3
            ),
        }
    }
}

/// The probe server's current-thread runtime. Dropped, it drops what is left of its
/// tasks without waiting for blocking work a probe may have started, and without the
/// panic a runtime dropped inside async code raises (a failed start inside an
/// application's `main` drops it there).
pub(crate) struct ServerRuntime(Option<tokio::runtime::Runtime>);

impl ServerRuntime {
    pub(crate) fn new(runtime: tokio::runtime::Runtime) -> Self {
        Self(Some(runtime))
    }

    /// Runs the runtime's tasks on the calling thread until `exit` is sent or dropped.
    pub(crate) fn run_until(&self, exit: tokio::sync::oneshot::Receiver<()>) {
        if let Some(runtime) = &self.0 {
            runtime.block_on(async {
                let _ = exit.await;
            });
        }
    }
}

impl Drop for ServerRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// Asks the kernel for `SCHED_DEADLINE` on the calling thread when `deadline` is set
/// and the process may have it, else for [`PROBE_THREAD_SLICE`] (keeping the thread's
/// policy, nice value and flags), and reads back what it got.
pub(crate) fn ask_scheduling(deadline: bool) -> Scheduling {
    if deadline && let Some(granted) = imp::ask_deadline(PROBE_THREAD_RUNTIME, PROBE_THREAD_PERIOD)
    {
        return granted;
    }
    imp::ask(PROBE_THREAD_SLICE)
}

#[cfg(target_os = "linux")]
mod imp {
    use std::io;
    use std::time::Duration;

    use super::Scheduling;

    /// `sched_getattr(2)` or `sched_setattr(2)`.
    #[derive(Clone, Copy)]
    enum Call {
        Get,
        Set,
    }

    pub(super) fn ask(slice: Duration) -> Scheduling {
        let wanted = u64::try_from(slice.as_nanos()).unwrap_or(u64::MAX);
        let mut attr = empty();
        if let Err(e) = sched_attr(Call::Get, &mut attr) {
            return refused(&e);
        }
        let policy = attr.sched_policy as libc::c_int;
        if !matches!(
            policy,
            libc::SCHED_OTHER | libc::SCHED_BATCH | libc::SCHED_IDLE
        ) {
            return Scheduling::DefaultSlice(format!(
                "the thread runs under scheduling policy {policy}, not SCHED_OTHER"
            ));
        }
        // Only the runtime changes: the policy, nice value and flags read above are
        // given back as they are (lowering the nice value would need a privilege).
        attr.sched_runtime = wanted;
        attr.sched_flags &= libc::SCHED_FLAG_RESET_ON_FORK as u64;
        if let Err(e) = sched_attr(Call::Set, &mut attr) {
            return refused(&e);
        }
        let mut got = empty();
        if let Err(e) = sched_attr(Call::Get, &mut got) {
            return refused(&e);
        }
        if got.sched_runtime == wanted {
            Scheduling::ShortSlice(Duration::from_nanos(got.sched_runtime))
        } else {
            Scheduling::DefaultSlice(
                "the kernel ignores a thread's own time slice (Linux older than 6.12)".into(),
            )
        }
    }

    /// `SCHED_DEADLINE` in `<linux/sched.h>` (the libc crate does not define it).
    const SCHED_DEADLINE: u32 = 6;

    /// Puts the calling thread under `SCHED_DEADLINE` with `runtime` every `period`,
    /// its children reset to the ordinary policy; `None` where the kernel refuses (no
    /// `CAP_SYS_NICE`, a cpuset narrower than the machine, no bandwidth left).
    pub(super) fn ask_deadline(runtime: Duration, period: Duration) -> Option<Scheduling> {
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let mut attr = empty();
        attr.sched_policy = SCHED_DEADLINE;
        attr.sched_flags = libc::SCHED_FLAG_RESET_ON_FORK as u64;
        attr.sched_runtime = nanos(runtime);
        attr.sched_deadline = nanos(period);
        attr.sched_period = nanos(period);
        sched_attr(Call::Set, &mut attr).ok()?;
        Some(Scheduling::Deadline { runtime, period })
    }

    pub(super) fn refused(e: &io::Error) -> Scheduling {
        let why = match e.raw_os_error() {
            Some(libc::ENOSYS) => {
                "sched_setattr is not available (a seccomp filter, or an old kernel)".into()
            }
            Some(libc::EPERM) => "sched_setattr is not permitted here".into(),
            _ => format!("sched_setattr failed: {e}"),
        };
        Scheduling::DefaultSlice(why)
    }

    fn empty() -> libc::sched_attr {
        libc::sched_attr {
            size: std::mem::size_of::<libc::sched_attr>() as u32,
            sched_policy: 0,
            sched_flags: 0,
            sched_nice: 0,
            sched_priority: 0,
            sched_runtime: 0,
            sched_deadline: 0,
            sched_period: 0,
        }
    }

    /// Reads or sets the calling thread's scheduling attributes.
    #[expect(
        unsafe_code,
        reason = "sched_getattr(2) and sched_setattr(2) have no safe wrapper in libc, nix or rustix"
    )]
    fn sched_attr(call: Call, attr: &mut libc::sched_attr) -> io::Result<()> {
        let size = attr.size;
        let (number, third) = match call {
            Call::Get => (libc::SYS_sched_getattr, size),
            // sched_setattr's third argument is its flags, none of which is used.
            Call::Set => (libc::SYS_sched_setattr, 0),
        };
        let pid: libc::pid_t = 0;
        // SAFETY: pid 0 names the calling thread. `attr` is a live, exclusively borrowed
        // `sched_attr` whose `size` field is its own size (the kernel's first version of
        // the struct, 48 bytes), for the whole call: sched_getattr writes at most `size`
        // bytes into it, sched_setattr reads at most `attr.size` bytes from it. The last
        // argument is sched_getattr's flags, which must be 0 (sched_setattr takes three
        // arguments and ignores it). Nothing else is read or written.
        let rc = unsafe {
            libc::syscall(
                number,
                pid,
                attr as *mut libc::sched_attr,
                third,
                0 as libc::c_uint,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use std::time::Duration;

    use super::Scheduling;

    pub(super) fn ask(_: Duration) -> Scheduling {
        Scheduling::DefaultSlice("a thread's own time slice needs Linux 6.12 or later".into())
    }

    pub(super) fn ask_deadline(_: Duration, _: Duration) -> Option<Scheduling> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_what_the_kernel_granted() {
        let shown = Scheduling::ShortSlice(PROBE_THREAD_SLICE).to_string();
        assert_eq!(shown, "own thread, 0.1 ms time slice");
        let shown = Scheduling::DefaultSlice("why".into()).to_string();
        assert_eq!(shown, "own thread, default time slice (why)");
        let shown = Scheduling::Deadline {
            runtime: PROBE_THREAD_RUNTIME,
            period: PROBE_THREAD_PERIOD,
        }
        .to_string();
        assert_eq!(shown, "own thread, SCHED_DEADLINE 2 ms every 10 ms");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_refusal_says_why() {
        let why = |errno| match imp::refused(&std::io::Error::from_raw_os_error(errno)) {
            Scheduling::DefaultSlice(why) => why,
            other => panic!("{other:?}"),
        };
        assert!(why(libc::ENOSYS).contains("seccomp"));
        assert!(why(libc::EPERM).contains("not permitted"));
        assert!(why(libc::EINVAL).starts_with("sched_setattr failed: "));
    }

    #[test]
    fn the_calling_thread_gets_the_short_slice_or_a_reason() {
        // On a thread of its own, so the test harness's thread keeps its slice.
        let got = std::thread::spawn(|| ask_scheduling(false)).join().unwrap();
        match got {
            Scheduling::ShortSlice(slice) => assert_eq!(slice, PROBE_THREAD_SLICE),
            Scheduling::DefaultSlice(why) => assert!(!why.is_empty()),
            other => panic!("only the slice was asked for, got {other:?}"),
        }
    }

    /// The `policy` line of the calling thread's `/proc/thread-self/sched`.
    #[cfg(target_os = "linux")]
    fn own_policy() -> u32 {
        let text = std::fs::read_to_string("/proc/thread-self/sched").unwrap();
        let line = text.lines().find(|l| l.starts_with("policy")).unwrap();
        line.rsplit(':').next().unwrap().trim().parse().unwrap()
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn deadline_where_permitted_and_children_reset_to_the_ordinary_policy() {
        let (got, policy, child_policy) = std::thread::spawn(|| {
            let got = ask_scheduling(true);
            let child = std::thread::spawn(own_policy).join().unwrap();
            (got, own_policy(), child)
        })
        .join()
        .unwrap();
        match got {
            Scheduling::Deadline { runtime, period } => {
                assert_eq!(
                    (runtime, period),
                    (PROBE_THREAD_RUNTIME, PROBE_THREAD_PERIOD)
                );
                assert_eq!(policy, 6, "SCHED_DEADLINE");
            }
            // Without CAP_SYS_NICE: the short slice, as without the deadline.
            Scheduling::ShortSlice(_) | Scheduling::DefaultSlice(_) => assert_eq!(policy, 0),
            Scheduling::SharedRuntime => panic!("asked, so not shared"),
        }
        assert_eq!(
            child_policy, 0,
            "a child of the probe thread runs as SCHED_OTHER"
        );
    }
}
