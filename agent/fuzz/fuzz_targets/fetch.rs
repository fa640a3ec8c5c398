//! One fragment's fetch against a server that answers anything: any status,
//! any `Content-Range`, bodies cut anywhere, bytes flipped. The fetch never
//! panics, writes only contiguous bytes, keeps what it wrote equal to the
//! fragment while nothing was flipped, and verifies only the right bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use outpost_agent::engine::fetch::FragmentFetch;
use outpost_agent::engine::manifest::sha256;

fuzz_target!(|data: &[u8]| {
    let [a, b, ops @ ..] = data else { return };
    let size = usize::from(u16::from_le_bytes([*a, *b]) % 4096);
    let fragment: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
    let mut f = FragmentFetch::new(size as u64, sha256(&fragment));
    let mut written: Vec<u8> = Vec::new();
    let mut flipped = false;
    // Where the current response's body is in the fragment (None: no response).
    let mut server: Option<usize> = None;
    let mut ops = ops.iter().copied();
    if let Some(n) = ops.next() {
        // Bytes already durable from an earlier run.
        let n = (usize::from(n) * 16).min(size);
        f.resume(&fragment[..n]);
        written.extend_from_slice(&fragment[..n]);
    }
    while let Some(op) = ops.next() {
        let x = usize::from(ops.next().unwrap_or(0)) * 16;
        let y = usize::from(ops.next().unwrap_or(0)) * 16;
        match op % 4 {
            0 => {
                server = f.handle_head(200, None).ok().map(|()| 0);
            }
            1 => {
                let (first, last) = (x.min(y), x.max(y));
                let total =
                    if op & 0x10 != 0 { "*".to_string() } else { (size + usize::from(op >> 5 == 7)).to_string() };
                let cr = format!("bytes {first}-{last}/{total}");
                server = f.handle_head(206, Some(&cr)).ok().map(|()| first);
            }
            2 => {
                let status = [404, 416, 500, 302, 204][x % 5];
                assert!(f.handle_head(status, None).is_err(), "status {status} is refused");
                server = None;
            }
            _ => {
                let Some(at) = server else { continue };
                let end = (at + x + 1).min(size + usize::from(op & 0x80 != 0));
                let mut chunk: Vec<u8> = (at..end).map(|i| fragment.get(i).copied().unwrap_or(0)).collect();
                if op & 0x40 != 0 && !chunk.is_empty() {
                    let l = chunk.len();
                    chunk[y % l] ^= 1;
                    flipped = true;
                }
                match f.handle_body(&chunk) {
                    Ok((offset, bytes)) => {
                        assert_eq!(offset as usize, written.len(), "writes are contiguous");
                        written.extend_from_slice(bytes);
                        server = Some(end);
                    }
                    Err(_) => server = None,
                }
            }
        }
        assert_eq!(f.have() as usize, written.len());
        assert!(written.len() <= size);
        if !flipped {
            assert_eq!(written, fragment[..written.len()], "bytes kept are the fragment's");
        }
        if f.is_complete() {
            assert_eq!(f.finish().is_ok(), written == fragment, "verified exactly when right");
        } else {
            assert!(f.finish().is_err());
        }
    }
});
