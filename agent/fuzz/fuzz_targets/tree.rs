//! The object tree of a signed manifest (engine::tree). Any bytes are
//! refused or accepted without a panic; a tree it accepts has only paths
//! the agent may write, chunks within bounds, and encodes back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use outpost_agent::engine::tree::{MAX_CHUNK, Tree, path_ok};

fuzz_target!(|data: &[u8]| {
    if let Ok(t) = Tree::decode(data) {
        for e in &t.entries {
            assert!(path_ok(&e.path) && !e.path.split('/').any(|c| c == ".."));
            assert!(e.chunks.iter().all(|c| c.size > 0 && c.size <= MAX_CHUNK));
            assert!(!e.is_dir() || e.chunks.is_empty());
        }
        assert_eq!(Tree::decode(&t.encode()).as_ref(), Ok(&t), "encoded and decoded again");
    }
});
