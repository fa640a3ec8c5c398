//! What `serve` does every second, off the request path: write the
//! contacts that waited ([`crate::contacts`]), then move rollouts on
//! ([`crate::fleet::contact::tick`]: a `--wave-wait` that ran out, an
//! evaluation asked for and paced by [`crate::fleet::pace`]).

use std::sync::Arc;
use std::time::Duration;

use crate::serve::State;

/// How often the contacts that wait are written ([`crate::contacts`]).
const CONTACT_FLUSH: Duration = Duration::from_secs(1);

/// Write the contacts that wait, every second; then move
/// rollouts on (`crate::fleet::contact::tick`: a `--wave-wait` that ran
/// out, an evaluation asked for and paced).
pub async fn run(state: Arc<State>) {
    loop {
        smol::Timer::after(CONTACT_FLUSH).await;
        flush_contacts(&state).await;
        let st = state.clone();
        smol::unblock(move || {
            if let Ok(mut db) = st.db.lock() {
                crate::fleet::contact::tick(&mut db, crate::time::unix_now());
            }
        })
        .await;
    }
}

/// Contacts written in one transaction, at most: the database is locked
/// for a few milliseconds at a time, not for a whole second's polls.
const CONTACTS_PER_COMMIT: usize = 1024;

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
        for chunk in contacts.chunks(CONTACTS_PER_COMMIT) {
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
