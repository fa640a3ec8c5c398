//! Group commit: many threads' writes in one database transaction.
//!
//! A durable SQLite commit waits for an fsync (about 3 ms on this kind of
//! disk), so a server that commits each report on its own records at most
//! a few hundred a second whatever its CPU. Here each request thread
//! [`GroupCommit::submit`]s its item; the first to find no commit running
//! becomes the leader, takes every item queued so far (its own included)
//! and commits them together, while the others wait for their result.
//! Items that arrive during that commit form the next batch. Nobody waits
//! for a timer: a lone request is committed at once, and under load a
//! batch grows to the number of requests in flight.
//!
//! ```text
//!  thread A: submit ─► leader: take [A] ─► commit ─► results ─► A returns
//!  thread B:      submit (queued) ──────────── wait ─► leader: take [B, C] ─► commit ─► …
//!  thread C:           submit (queued) ─────── wait ───────────────────────── C returns
//! ```
//!
//! If a commit panics, every item of its batch gets `None` and the next
//! waiter leads: no thread waits for ever.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, MutexGuard};

/// Items of type `T` committed in batches, each giving a result `R`.
pub struct GroupCommit<T, R> {
    inner: Mutex<Inner<T, R>>,
    done: Condvar,
}

struct Inner<T, R> {
    queued: Vec<(u64, T)>,
    results: HashMap<u64, Option<R>>,
    next_ticket: u64,
    committing: bool,
}

impl<T, R> Default for GroupCommit<T, R> {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Inner { queued: Vec::new(), results: HashMap::new(), next_ticket: 0, committing: false }),
            done: Condvar::new(),
        }
    }
}

impl<T, R> GroupCommit<T, R> {
    /// Commit `item` with whatever else is queued. `commit` is given a batch
    /// and must return one result per item, in order (a shorter answer
    /// leaves the rest `None`). `None`: the commit panicked (or answered
    /// short), so the item's fate is unknown to the caller.
    pub fn submit(&self, item: T, commit: impl Fn(Vec<T>) -> Vec<R>) -> Option<R> {
        let mut g = self.lock();
        let ticket = g.next_ticket;
        g.next_ticket += 1;
        g.queued.push((ticket, item));
        loop {
            if let Some(r) = g.results.remove(&ticket) {
                return r;
            }
            if g.committing {
                g = self.done.wait(g).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            g.committing = true;
            let (tickets, batch): (Vec<u64>, Vec<T>) = std::mem::take(&mut g.queued).into_iter().unzip();
            drop(g);
            let mut lead = Lead { owner: self, tickets, answered: false };
            let results = commit(batch);
            g = self.lock();
            let mut results = results.into_iter();
            for t in &lead.tickets {
                g.results.insert(*t, results.next());
            }
            g.committing = false;
            lead.answered = true;
            drop(lead);
            self.done.notify_all();
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner<T, R>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The leader's batch: answered `None` and handed on if the commit unwinds.
struct Lead<'a, T, R> {
    owner: &'a GroupCommit<T, R>,
    tickets: Vec<u64>,
    answered: bool,
}

impl<T, R> Drop for Lead<'_, T, R> {
    fn drop(&mut self) {
        if self.answered {
            return;
        }
        let mut g = self.owner.lock();
        for t in &self.tickets {
            g.results.insert(*t, None);
        }
        g.committing = false;
        drop(g);
        self.owner.done.notify_all();
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
        assert_eq!(g.submit(7, |b: Vec<i32>| b.iter().map(|x| x * 2).collect()), Some(14));
    }

    #[test]
    fn items_queued_during_a_commit_share_the_next_one() {
        let g = Arc::new(GroupCommit::default());
        let commits = Arc::new(AtomicUsize::new(0));
        let (entered_tx, entered_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let release_rx = Mutex::new(release_rx);
        let commit = |b: Vec<u32>| {
            commits.fetch_add(1, Ordering::SeqCst);
            if b == [0] {
                entered_tx.send(()).unwrap();
                release_rx.lock().unwrap().recv().unwrap();
            }
            b.iter().map(|x| x + 100).collect::<Vec<_>>()
        };
        std::thread::scope(|s| {
            let first = s.spawn(|| g.submit(0, commit));
            entered_rx.recv().unwrap();
            // Item 0's commit is running: these queue behind it.
            let others: Vec<_> = (1..=8)
                .map(|i| {
                    let (g, commit) = (&g, &commit);
                    s.spawn(move || g.submit(i, commit))
                })
                .collect();
            while g.lock().queued.len() < 8 {
                std::thread::yield_now();
            }
            release_tx.send(()).unwrap();
            assert_eq!(first.join().unwrap(), Some(100));
            for (i, h) in (1..).zip(others) {
                assert_eq!(h.join().unwrap(), Some(i + 100), "each gets its own result");
            }
        });
        assert_eq!(commits.load(Ordering::SeqCst), 2, "the eight queued items went in one commit");
    }

    #[test]
    fn a_short_answer_leaves_the_rest_unknown() {
        let g = GroupCommit::default();
        assert_eq!(g.submit(1, |_b: Vec<i32>| Vec::<i32>::new()), None);
        assert_eq!(g.submit(2, |b: Vec<i32>| b), Some(2), "the next commit works");
    }
}
