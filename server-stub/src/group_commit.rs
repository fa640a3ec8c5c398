//! Group commit: many requests' writes in one database transaction, on
//! one thread, with no request holding a thread while it waits.
//!
//! A durable SQLite commit waits for an fsync (about 3 ms on this kind of
//! disk), so a server that commits each report on its own records at most
//! a few hundred a second whatever its CPU. Here a request
//! [`GroupCommit::submit`]s its item and awaits its result; one thread
//! takes every item queued so far (up to `max_batch`), commits them
//! together, answers each, and takes the next batch: the items that
//! arrived during that commit. Nobody waits for a timer: a lone item is
//! committed at once, and under load a batch grows to the number of
//! requests in flight.
//!
//! ```text
//!  request A: submit ─► await ─────────────────────────────► A answered
//!  request B:     submit ─► await ─────────────────────────────────────────────► B answered
//!  committer:  take [A] ─► commit ─► answer A ─► take [B, C, …] ─► commit ─► answer B, C, …
//! ```
//!
//! An earlier version let the first waiting request thread lead the
//! commit and the others sleep on a condition variable: every report took
//! a thread of the blocking pool and two context switches, a third of the
//! server's time under load. If a commit panics (where panics unwind:
//! tests; the release profile aborts), every item of its batch gets `None`
//! and the thread goes on.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;

use smol::channel::{Receiver, Sender, bounded, unbounded};

type Job<T, R> = (T, Sender<R>);

/// Items of type `T` committed in batches, each giving a result `R`.
pub struct GroupCommit<T, R> {
    queue: Sender<Job<T, R>>,
    /// Taken by [`GroupCommit::start`].
    jobs: Mutex<Option<Receiver<Job<T, R>>>>,
}

impl<T: Send + 'static, R: Send + 'static> Default for GroupCommit<T, R> {
    fn default() -> Self {
        let (queue, jobs) = unbounded();
        Self { queue, jobs: Mutex::new(Some(jobs)) }
    }
}

impl<T: Send + 'static, R: Send + 'static> GroupCommit<T, R> {
    /// Start the thread `outpost-{name}` that commits batches of at most
    /// `max_batch` items with `commit`, which must return one result per
    /// item, in order (a shorter answer leaves the rest `None`). Once;
    /// again is an error.
    pub fn start(
        &self,
        name: &str,
        max_batch: usize,
        mut commit: impl FnMut(Vec<T>) -> Vec<R> + Send + 'static,
    ) -> Result<(), String> {
        let jobs = self.jobs.lock().ok().and_then(|mut j| j.take()).ok_or("the committer is already started")?;
        let max_batch = max_batch.max(1);
        std::thread::Builder::new()
            .name(format!("outpost-{name}"))
            .spawn(move || {
                while let Ok(first) = jobs.recv_blocking() {
                    let mut batch = vec![first];
                    while batch.len() < max_batch
                        && let Ok(next) = jobs.try_recv()
                    {
                        batch.push(next);
                    }
                    let (items, replies): (Vec<T>, Vec<Sender<R>>) = batch.into_iter().unzip();
                    // A reply not sent (a panic, a short answer) closes its
                    // channel: that request gets `None`.
                    if let Ok(results) = catch_unwind(AssertUnwindSafe(|| commit(items))) {
                        for (reply, r) in replies.into_iter().zip(results) {
                            let _ = reply.try_send(r);
                        }
                    }
                }
            })
            .map_err(|e| format!("cannot start the {name} thread: {e}"))?;
        Ok(())
    }

    /// Commit `item` with whatever else is queued; its result. `None`: the
    /// commit panicked or answered short (or the committer is gone), so
    /// the item's fate is unknown to the caller.
    pub async fn submit(&self, item: T) -> Option<R> {
        let (reply, result) = bounded(1);
        self.queue.send((item, reply)).await.ok()?;
        result.recv().await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn a_lone_item_is_committed_at_once_with_its_result() {
        let g = GroupCommit::default();
        g.start("test-commit", 64, |b: Vec<i32>| b.iter().map(|x| x * 2).collect()).unwrap();
        assert_eq!(smol::block_on(g.submit(7)), Some(14));
        assert!(g.start("test-commit", 64, |b: Vec<i32>| b).is_err(), "one committer");
    }

    #[test]
    fn items_queued_during_a_commit_share_the_next_one() {
        let g = Arc::new(GroupCommit::default());
        let commits = Arc::new(AtomicUsize::new(0));
        let (entered_tx, entered_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let counted = commits.clone();
        g.start("test-commit", 64, move |b: Vec<u32>| {
            counted.fetch_add(1, Ordering::SeqCst);
            if b == [0] {
                entered_tx.send(()).unwrap();
                release_rx.recv().unwrap();
            }
            b.iter().map(|x| x + 100).collect::<Vec<_>>()
        })
        .unwrap();
        smol::block_on(async {
            let first = smol::spawn({
                let g = g.clone();
                async move { g.submit(0).await }
            });
            entered_rx.recv().unwrap();
            // Item 0's commit is running: these queue behind it.
            let mut others: Vec<_> = (1..=8).map(|i| Box::pin(g.submit(i))).collect();
            for p in &mut others {
                assert!(smol::future::poll_once(p.as_mut()).await.is_none(), "waits");
            }
            assert_eq!(g.queue.len(), 8);
            release_tx.send(()).unwrap();
            assert_eq!(first.await, Some(100));
            for (i, p) in (1..).zip(others) {
                assert_eq!(p.await, Some(i + 100), "each gets its own result");
            }
        });
        assert_eq!(commits.load(Ordering::SeqCst), 2, "the eight queued items went in one commit");
    }

    #[test]
    fn a_short_answer_or_a_panic_leaves_the_rest_unknown() {
        let g = GroupCommit::default();
        g.start("test-commit", 64, |b: Vec<i32>| match b[0] {
            1 => Vec::new(),
            3 => panic!("a bad commit"),
            _ => b,
        })
        .unwrap();
        assert_eq!(smol::block_on(g.submit(1)), None);
        assert_eq!(smol::block_on(g.submit(2)), Some(2), "the next commit works");
        assert_eq!(smol::block_on(g.submit(3)), None);
        assert_eq!(smol::block_on(g.submit(4)), Some(4), "the thread lives on");
    }
}
