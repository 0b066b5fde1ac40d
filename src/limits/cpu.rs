//! Where expensive checks run: off the async workers, within a share per
//! caller, a heavy caller's in the idle scheduling class while callers compete.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where CPU-heavy work (checking a batch's signatures) runs: never on the
/// async workers that answer every caller, at most one job per core at once
/// and at most `per_caller` of them for one caller, so one peer's flood can
/// neither stall the workers nor take every core. While callers compete, a
/// heavy one (whose checks took more than a tenth of a core in the last
/// second, or that has more jobs waiting than its share: a peer sending as
/// fast as it can) has its jobs run on background threads at the lowest
/// scheduling priority (Linux `SCHED_IDLE`): they get every cycle no one else
/// wants, and give way at once to a light caller's check, an operator's
/// `Status` or the node's own I/O.
pub struct CpuShare {
    all: Arc<tokio::sync::Semaphore>,
    per_caller: usize,
    callers: Mutex<HashMap<String, Arc<Share>>>,
    background: std::sync::mpsc::Sender<Job>,
    mixed: Mutex<Mixed>,
}

/// Whether callers compete: the caller of the last job and when it started,
/// and until when the share counts as contended (a second after two callers'
/// jobs came within a second of each other). A lone busy peer has nobody to
/// yield to and runs at normal priority.
struct Mixed {
    caller: String,
    at: Instant,
    until: Instant,
}

/// One caller's share: its permits, how many of its jobs are waiting or
/// running, and the CPU time its jobs took lately.
struct Share {
    permits: tokio::sync::Semaphore,
    outstanding: std::sync::atomic::AtomicUsize,
    usage: Mutex<Usage>,
}

/// CPU time a caller's jobs took in the current one-second window and the one before.
#[derive(Clone, Copy)]
struct Usage {
    window: Instant,
    this: Duration,
    last: Duration,
}

/// Checks taking more than this per second (a tenth of a core) make a caller heavy.
const HEAVY: Duration = Duration::from_millis(100);

impl Share {
    /// Moves the window on to `now`.
    fn usage(&self, now: Instant) -> std::sync::MutexGuard<'_, Usage> {
        let mut u = self.usage.lock().unwrap_or_else(|e| e.into_inner());
        let age = now.saturating_duration_since(u.window);
        if age >= Duration::from_secs(1) {
            u.last = if age < Duration::from_secs(2) {
                u.this
            } else {
                Duration::ZERO
            };
            u.this = Duration::ZERO;
            u.window = now;
        }
        u
    }

    fn heavy(&self, now: Instant) -> bool {
        let u = self.usage(now);
        u.this.max(u.last) >= HEAVY
    }

    fn spent(&self, took: Duration, now: Instant) {
        self.usage(now).this += took;
    }
}

/// Counts a job as outstanding until it is dropped.
struct Outstanding(Arc<Share>);

impl Drop for Outstanding {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A job for the background threads.
type Job = Box<dyn FnOnce() + Send>;

/// A job that gave no result: it panicked, or the node is shutting down.
#[derive(Debug, thiserror::Error)]
#[error("the check panicked or the node is stopping")]
pub struct JobFailed;

impl CpuShare {
    /// `cores` jobs at once, `per_caller` of them for any one caller.
    pub fn new(cores: usize, per_caller: usize) -> Self {
        let cores = cores.max(1);
        let (background, queue) = std::sync::mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..cores {
            let queue = queue.clone();
            let started = std::thread::Builder::new()
                .name(format!("hotline-cpu-bg-{i}"))
                .spawn(move || {
                    lowest_priority();
                    // Ends when the share is dropped and the queue closes.
                    while let Ok(job) = queue.lock().unwrap_or_else(|e| e.into_inner()).recv() {
                        job();
                    }
                });
            if let Err(e) = started {
                tracing::error!(error = %e, "cannot start a background CPU thread");
            }
        }
        Self {
            all: Arc::new(tokio::sync::Semaphore::new(cores)),
            per_caller: per_caller.clamp(1, cores),
            callers: Mutex::default(),
            background,
            mixed: Mutex::new(Mixed {
                caller: String::new(),
                at: Instant::now(),
                until: Instant::now(),
            }),
        }
    }

    /// Records a job of `caller` starting `now`; whether another caller's came within the last second.
    fn contended(&self, caller: &str, now: Instant) -> bool {
        let mut m = self.mixed.lock().unwrap_or_else(|e| e.into_inner());
        if m.caller != caller {
            if !m.caller.is_empty() && now.saturating_duration_since(m.at) < Duration::from_secs(1) {
                m.until = now + Duration::from_secs(1);
            }
            caller.clone_into(&mut m.caller);
        }
        m.at = now;
        now < m.until
    }

    /// Sized to this machine: one job per core, half of them for one caller.
    pub fn for_this_machine() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self::new(cores, cores.div_ceil(2))
    }

    /// Runs `work` for `caller` once its share and a core are free; in the
    /// background class when the caller has more jobs than its share.
    pub async fn run<T: Send + 'static>(
        &self,
        caller: &str,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, JobFailed> {
        let share = {
            let mut callers = self.callers.lock().unwrap_or_else(|e| e.into_inner());
            callers
                .entry(caller.to_owned())
                .or_insert_with(|| {
                    Arc::new(Share {
                        permits: tokio::sync::Semaphore::new(self.per_caller),
                        outstanding: Default::default(),
                        usage: Mutex::new(Usage {
                            window: Instant::now(),
                            this: Duration::ZERO,
                            last: Duration::ZERO,
                        }),
                    })
                })
                .clone()
        };
        let excess = share.outstanding.fetch_add(1, std::sync::atomic::Ordering::Relaxed) >= self.per_caller;
        let _outstanding = Outstanding(share.clone());
        // The semaphores are never closed, so these always hold a permit.
        let _mine = share.permits.acquire().await.ok();
        let _core = self.all.clone().acquire_owned().await.ok();
        let timed = {
            let share = share.clone();
            move || {
                let started = Instant::now();
                let value = work();
                share.spent(started.elapsed(), Instant::now());
                value
            }
        };
        let now = Instant::now();
        // Every job counts towards contention, a light caller's above all.
        let contended = self.contended(caller, now);
        let yields = contended && (excess || share.heavy(now));
        if !yields {
            return tokio::task::spawn_blocking(timed).await.map_err(|_| JobFailed);
        }
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            // A panic fails this job only; the thread goes on to the next.
            if let Ok(value) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(timed)) {
                let _ = done.send(value);
            }
        });
        self.background.send(job).map_err(|_| JobFailed)?;
        result.await.map_err(|_| JobFailed)
    }
}

/// Puts the calling thread in the lowest scheduling class there is: Linux's
/// `SCHED_IDLE`, elsewhere the lowest priority; where that is refused, the
/// thread runs at the normal one.
fn lowest_priority() {
    use thread_priority::ThreadPriority;
    #[cfg(target_os = "linux")]
    let set = thread_priority::set_thread_priority_and_policy(
        thread_priority::thread_native_id(),
        ThreadPriority::Min,
        thread_priority::ThreadSchedulePolicy::Normal(thread_priority::NormalThreadSchedulePolicy::Idle),
    );
    #[cfg(not(target_os = "linux"))]
    let set = thread_priority::set_current_thread_priority(ThreadPriority::Min);
    if let Err(e) = set {
        tracing::warn!(error = ?e, "background CPU threads run at normal priority");
    }
}
