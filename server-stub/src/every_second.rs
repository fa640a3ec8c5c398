//! What `serve` does every second, off the request path: write the
//! contacts that waited ([`crate::contacts`]), then move rollouts on
//! ([`crate::fleet::contact::tick`], on a thread of its own, paced by
//! [`crate::fleet::pace`]).

use std::sync::Arc;
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::time::Duration;

use crate::fleet::pace::Pace;
use crate::serve::State;

/// How often the contacts that wait are written ([`crate::contacts`]).
const CONTACT_FLUSH: Duration = Duration::from_secs(1);

/// Write the contacts that wait, every second; then move rollouts on.
pub async fn run(state: Arc<State>) {
    let rollouts = match rollout_thread(state.clone()) {
        Ok(tx) => Some(tx),
        Err(e) => {
            log::error!(target: "outpost", "fleet: no thread for rollouts ({e}): they move on only at `status`");
            None
        }
    };
    loop {
        smol::Timer::after(CONTACT_FLUSH).await;
        flush_contacts(&state).await;
        if let Some(tx) = &rollouts {
            // One waits at most: a tick that finds the thread busy is not kept.
            if let Err(TrySendError::Disconnected(())) = tx.try_send(()) {
                log::error!(target: "outpost", "fleet: the rollouts thread ended");
            }
        }
    }
}

/// The thread that runs every whole rollout evaluation of this process,
/// one at a time: an evaluation reads every device (tens of MiB with
/// 100,000), and run on whichever thread asked, each of those kept its
/// peak (233 MiB resident with one rollout over 100,000 devices). It
/// ends when `serve` drops the sender.
fn rollout_thread(state: Arc<State>) -> std::io::Result<SyncSender<()>> {
    let (tx, rx) = sync_channel::<()>(1);
    std::thread::Builder::new().name("rollouts".into()).spawn(move || {
        let mut pace = Pace::new();
        while rx.recv().is_ok() {
            match state.db.lock() {
                Ok(mut db) => crate::fleet::contact::tick(&mut db, &mut pace, crate::time::unix_now()),
                Err(_) => log::error!(target: "outpost", "database lock poisoned: rollouts do not move on"),
            }
        }
    })?;
    Ok(tx)
}

/// Contacts written in one transaction, at most: the database is locked
/// for a few milliseconds at a time, not for a whole second's polls.
const CONTACTS_PER_COMMIT: usize = 1024;

/// [`CONTACTS_PER_COMMIT`] on PostgreSQL, where each contact is a round
/// trip: 1,024 of them held a transaction (and a connection, and the rows'
/// locks) open for up to 10 s on a loaded server with 100,000 devices;
/// commits there are not waited for (`synchronous_commit = off`), so more
/// of them cost little.
const CONTACTS_PER_COMMIT_PG: usize = 64;

/// Write the contacts that wait now, on the blocking pool.
pub async fn flush_contacts(state: &Arc<State>) {
    let mut contacts = state.contacts.take();
    if contacts.is_empty() {
        return;
    }
    // In key order, each commit writes its own run of pages, not a few
    // rows on every page of the tables.
    contacts.sort_unstable_by(|a, b| a.device.cmp(&b.device));
    let state = state.clone();
    smol::unblock(move || {
        let postgres = state.db.lock().is_ok_and(|db| db.backend() == crate::db::Backend::Postgres);
        let per_commit = if postgres { CONTACTS_PER_COMMIT_PG } else { CONTACTS_PER_COMMIT };
        for chunk in contacts.chunks(per_commit) {
            // Let a poll waiting for the lock have it between two chunks.
            std::thread::yield_now();
            match state.db.lock() {
                Ok(mut db) => crate::fleet::contact::on_contacts(&mut db, chunk),
                Err(_) => {
                    log::error!(target: "outpost", "database lock poisoned: {} contacts not recorded", chunk.len())
                }
            }
        }
    })
    .await;
}
