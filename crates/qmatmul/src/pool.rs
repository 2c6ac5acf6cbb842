//! [`WorkPool`]: the threads a matrix product is split over, built to degrade in
//! proportion when other processes compete for the cores instead of collapsing.
//!
//! A decoding step runs ~120 small products (tens of microseconds each), so waking
//! sleeping threads for each one would cost more than the work: after a product the
//! threads spin for a short while ([`SPIN`]) waiting for the next one. Unlike a barrier
//! pool that spins until every thread has finished its share, nothing here spins without
//! bound:
//!
//! - work is handed out in small chunks from a shared cursor, so whoever runs takes the
//!   work of a thread the scheduler has taken off its core; the caller waits only for
//!   chunks already being worked on;
//! - the caller waits for those by spinning at most [`SPIN`], then sleeping until the
//!   last chunk is done (the thread finishing it wakes the caller);
//! - idle workers spin at most [`SPIN`], then yield their core to anything else runnable
//!   for [`YIELD`], then sleep until the next product.
//!
//! So with more runnable threads than cores, a descheduled worker costs the caller at
//! most [`SPIN`] of wasted time per product, not the rest of its time slice.
//!
//! One caller at a time uses the workers; a second caller arriving meanwhile (another
//! model in the same process) runs its product on its own thread instead of queueing,
//! so a process never has more threads computing than its pool's plus its callers'.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, TryLockError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a thread spins waiting (for the next product, or for the last chunk of the
/// current one) before it yields or sleeps.
pub const SPIN: Duration = Duration::from_micros(50);

/// How long an idle worker keeps checking for the next product, yielding its core to
/// any other runnable thread between checks, after [`SPIN`] and before it sleeps.
pub const YIELD: Duration = Duration::from_micros(500);

/// Chunks per thread each product is cut into: small enough that a descheduled thread
/// holds little work, large enough that the shared cursor is rarely contended.
const CHUNKS_PER_THREAD: usize = 8;

/// One product: the caller's closure, its units and how they are handed out.
struct Job {
    /// The caller's closure, lifetime erased: dereferenced only after a successful claim,
    /// and the caller returns only once every claimed chunk is done.
    work: *const (dyn Fn(Range<usize>) + Sync),
    units: usize,
    chunk: usize,
    /// Next unclaimed unit (≥ `units` once all are claimed).
    cursor: AtomicUsize,
    /// Units completed.
    done: AtomicUsize,
    /// The caller is asleep waiting for `done` to reach `units`.
    caller_sleeping: AtomicBool,
}

// SAFETY: `work` points to a `Sync` closure and is only called while the caller keeps it
// alive (see its doc); the rest are atomics and plain values.
unsafe impl Send for Job {}
unsafe impl Sync for Job {}

/// State shared between the callers and the workers.
struct Shared {
    /// The latest job (workers that arrive after it is done find its cursor exhausted).
    job: Mutex<Option<Arc<Job>>>,
    /// Incremented for each job: how idle workers notice new work.
    epoch: AtomicU64,
    /// Workers asleep on `wake`.
    sleepers: AtomicUsize,
    /// The lock both sleeping sides wait with.
    lock: Mutex<()>,
    /// Signalled for a new job (workers) and for a job's last unit done (its caller).
    wake: Condvar,
    finished: Condvar,
    stop: AtomicBool,
}

impl Shared {
    fn sleep_lock(&self) -> MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A fixed set of worker threads that runs `parallel_for` work together with the
/// calling thread. See the module documentation.
pub struct WorkPool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    /// Held by the caller whose job the workers run.
    caller: Mutex<()>,
}

impl WorkPool {
    /// A pool of `workers` threads (the caller computes too, so `threads - 1` for
    /// `threads` cores; 0 runs everything on the caller).
    pub fn new(workers: usize) -> Self {
        let shared = Arc::new(Shared {
            job: Mutex::new(None),
            epoch: AtomicU64::new(0),
            sleepers: AtomicUsize::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
            finished: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let workers = (0..workers)
            .map(|i| {
                let shared = Arc::clone(&shared);
                std::thread::Builder::new()
                    .name(format!("qmatmul-{i}"))
                    .spawn(move || worker(&shared))
                    .expect("spawning a matmul worker thread")
            })
            .collect();
        Self {
            shared,
            workers,
            caller: Mutex::new(()),
        }
    }

    /// Worker threads (not counting callers).
    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// Calls `work` on ranges that cover `0..units` exactly once, on the calling thread
    /// and the workers, and returns when all are done: the `parallel_for` that
    /// [`crate::Matrix::matmul`] takes. A panic in `work` on a worker aborts the process
    /// (the kernels do not panic on valid matrices).
    pub fn parallel_for(&self, units: usize, work: &(dyn Fn(Range<usize>) + Sync)) {
        if units == 0 {
            return;
        }
        let _caller = match self.caller.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            // Another caller has the workers: compute on this thread.
            Err(TryLockError::WouldBlock) => return work(0..units),
        };
        if self.workers.is_empty() || units == 1 {
            return work(0..units);
        }
        let shared = &*self.shared;
        let work: *const (dyn Fn(Range<usize>) + Sync + '_) = work;
        let job = Arc::new(Job {
            // SAFETY: only the lifetime is erased; this function returns only once every
            // unit is done, and no thread calls `work` after that (see `Job::work`).
            work: unsafe {
                std::mem::transmute::<
                    *const (dyn Fn(Range<usize>) + Sync + '_),
                    *const (dyn Fn(Range<usize>) + Sync + 'static),
                >(work)
            },
            units,
            chunk: units
                .div_ceil((self.workers.len() + 1) * CHUNKS_PER_THREAD)
                .max(1),
            cursor: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            caller_sleeping: AtomicBool::new(false),
        });
        *shared.job.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::clone(&job));
        shared.epoch.fetch_add(1, Ordering::SeqCst);
        if shared.sleepers.load(Ordering::SeqCst) > 0 {
            let _lock = shared.sleep_lock();
            shared.wake.notify_all();
        }
        run_chunks(shared, &job);
        // Wait for the chunks other threads are still working on.
        let all_done = || job.done.load(Ordering::SeqCst) >= units;
        if !spin_until(SPIN, Duration::ZERO, all_done) {
            job.caller_sleeping.store(true, Ordering::SeqCst);
            let mut lock = shared.sleep_lock();
            while !all_done() {
                lock = shared
                    .finished
                    .wait(lock)
                    .unwrap_or_else(|e| e.into_inner());
            }
        }
    }

    /// Workers sleeping (not spinning) right now.
    #[cfg(test)]
    fn sleeping_workers(&self) -> usize {
        self.shared.sleepers.load(Ordering::SeqCst)
    }
}

impl Drop for WorkPool {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.epoch.fetch_add(1, Ordering::SeqCst);
        {
            let _lock = self.shared.sleep_lock();
            self.shared.wake.notify_all();
        }
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

/// Checks `ready` spinning (with the CPU's pause hint) for `spin`, then yielding the
/// core between checks for `yielding` more; whether it became ready.
fn spin_until(spin: Duration, yielding: Duration, ready: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    loop {
        for _ in 0..64 {
            if ready() {
                return true;
            }
            std::hint::spin_loop();
        }
        let elapsed = start.elapsed();
        if elapsed > spin + yielding {
            return ready();
        }
        if elapsed > spin {
            std::thread::yield_now();
        }
    }
}

/// Claims and runs chunks of `job` until none is left.
fn run_chunks(shared: &Shared, job: &Job) {
    loop {
        let start = job.cursor.fetch_add(job.chunk, Ordering::Relaxed);
        if start >= job.units {
            return;
        }
        let end = job.units.min(start + job.chunk);
        // SAFETY: the claim succeeded, so the job is not done and its caller is still
        // waiting, keeping the closure alive (see `Job::work`).
        unsafe { (*job.work)(start..end) };
        let done = job.done.fetch_add(end - start, Ordering::SeqCst) + (end - start);
        if done >= job.units && job.caller_sleeping.load(Ordering::SeqCst) {
            let _lock = shared.sleep_lock();
            shared.finished.notify_all();
        }
    }
}

/// A worker thread: runs chunks of each new job, spinning and then yielding briefly
/// between jobs, then sleeping.
fn worker(shared: &Shared) {
    let mut seen = shared.epoch.load(Ordering::SeqCst);
    loop {
        // `stop` too: a worker that starts after the pool is dropped sees no new epoch.
        let new_job =
            || shared.epoch.load(Ordering::SeqCst) != seen || shared.stop.load(Ordering::SeqCst);
        if !spin_until(SPIN, YIELD, new_job) {
            shared.sleepers.fetch_add(1, Ordering::SeqCst);
            let mut lock = shared.sleep_lock();
            while !new_job() {
                lock = shared.wake.wait(lock).unwrap_or_else(|e| e.into_inner());
            }
            drop(lock);
            shared.sleepers.fetch_sub(1, Ordering::SeqCst);
        }
        seen = shared.epoch.load(Ordering::SeqCst);
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let job = shared.job.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(job) = job {
            run_chunks(shared, &job);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `units` units on `pool` and checks each ran exactly once.
    fn covers_each_unit_once(pool: &WorkPool, units: usize) {
        let counts: Vec<AtomicUsize> = (0..units).map(|_| AtomicUsize::new(0)).collect();
        pool.parallel_for(units, &|range: Range<usize>| {
            for i in range {
                counts[i].fetch_add(1, Ordering::Relaxed);
            }
        });
        for (i, c) in counts.iter().enumerate() {
            assert_eq!(c.load(Ordering::Relaxed), 1, "unit {i} of {units}");
        }
    }

    #[test]
    fn every_unit_runs_once_for_every_size() {
        for workers in [0, 1, 3] {
            let pool = WorkPool::new(workers);
            for units in [0, 1, 2, 7, 36, 100, 3072] {
                covers_each_unit_once(&pool, units);
            }
        }
    }

    /// Back-to-back jobs, some separated by pauses longer than the spin, so that workers
    /// are caught both spinning and asleep, and late arrivals meet the next job.
    #[test]
    fn many_jobs_in_a_row_with_sleeping_workers() {
        let pool = WorkPool::new(2);
        for round in 0..2000 {
            covers_each_unit_once(&pool, 1 + round % 50);
            if round % 100 == 0 {
                std::thread::sleep(SPIN * 4);
            }
        }
    }

    /// More computing threads than this machine has cores: every product still completes
    /// and covers its units once (a spinning barrier pool crawls here).
    #[test]
    fn jobs_complete_while_other_threads_compete_for_the_cores() {
        let stop = Arc::new(AtomicBool::new(false));
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let competitors: Vec<_> = (0..cores)
            .map(|_| {
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::hint::spin_loop();
                    }
                })
            })
            .collect();
        let pool = WorkPool::new(cores);
        for round in 0..300 {
            covers_each_unit_once(&pool, 36 + round % 7);
        }
        stop.store(true, Ordering::Relaxed);
        for c in competitors {
            c.join().unwrap();
        }
    }

    /// Callers on several threads at once: one gets the workers, the others compute on
    /// their own threads; every product is complete.
    #[test]
    fn concurrent_callers_each_get_their_whole_product() {
        let pool = Arc::new(WorkPool::new(1));
        let callers: Vec<_> = (0..3)
            .map(|_| {
                let pool = Arc::clone(&pool);
                std::thread::spawn(move || {
                    for round in 0..300 {
                        covers_each_unit_once(&pool, 10 + round % 30);
                    }
                })
            })
            .collect();
        for c in callers {
            c.join().unwrap();
        }
    }

    /// After a product the workers stop spinning and sleep (a pool whose idle workers
    /// spin forever burns the cores other processes need).
    #[test]
    fn idle_workers_go_to_sleep() {
        let pool = WorkPool::new(2);
        covers_each_unit_once(&pool, 64);
        let deadline = Instant::now() + Duration::from_secs(30);
        while pool.sleeping_workers() < pool.workers() {
            assert!(
                Instant::now() < deadline,
                "workers still spinning after 30 s"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
