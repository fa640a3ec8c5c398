//! Threads that answer polls, one per database connection. A poll waits on
//! the database, so it cannot run on an executor thread; on the blocking
//! pool, each poll took a thread of its own, and under load the pool's
//! threads queued on the database's lock, each a sleep and a wake-up per
//! poll (the profile of kept-alive polls was a third context switches).
//! Here, a few long-lived threads take polls from one queue: when polls
//! come faster than they are answered, a worker takes the next one without
//! sleeping, and workers wait on no connection one another holds unless
//! there are more workers than connections. Other requests (reports,
//! fragment lookups, the status page) still run on the blocking pool and
//! take the same connections; the plain-HTTP fragment route asks the
//! database once per package, not per request
//! ([`crate::downloads::HttpsOnly`]).
//!
//! The queue is unbounded, but each connection has at most one request in
//! flight, so it holds at most as many jobs as the server has connections.
//! Where panics unwind (tests), a job that panics ends its own request
//! (500), not its worker; the release profile aborts on a panic, as it does
//! everywhere in the server.

use std::panic::{AssertUnwindSafe, catch_unwind};

use smol::channel::{Receiver, Sender, bounded, unbounded};

type Job = Box<dyn FnOnce() + Send>;

/// A fixed set of worker threads and their queue.
pub struct Workers {
    queue: Sender<Job>,
}

impl Workers {
    /// Start `n` workers (at least one), named `outpost-{name}-{i}`.
    pub fn start(name: &str, n: usize) -> Result<Self, String> {
        let (queue, jobs) = unbounded::<Job>();
        for i in 0..n.max(1) {
            let jobs: Receiver<Job> = jobs.clone();
            std::thread::Builder::new()
                .name(format!("outpost-{name}-{i}"))
                .spawn(move || {
                    while let Ok(job) = jobs.recv_blocking() {
                        job();
                    }
                })
                .map_err(|e| format!("cannot start a worker thread: {e}"))?;
        }
        Ok(Self { queue })
    }

    /// Run `f` on a worker; `None` if it panicked (or the workers are gone).
    pub async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        let (done, result) = bounded(1);
        let job: Job = Box::new(move || {
            if let Ok(out) = catch_unwind(AssertUnwindSafe(f)) {
                let _ = done.try_send(out);
            }
        });
        self.queue.send(job).await.ok()?;
        result.recv().await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_run_on_the_workers_and_a_panic_ends_only_its_own() {
        let w = Workers::start("test", 1).unwrap();
        let name = smol::block_on(w.run(|| std::thread::current().name().map(str::to_string)));
        assert_eq!(name, Some(Some("outpost-test-0".to_string())));
        assert_eq!(smol::block_on(w.run(|| -> u8 { panic!("a bad job") })), None);
        assert_eq!(smol::block_on(w.run(|| 7)), Some(7), "the one worker lives on");
    }
}
