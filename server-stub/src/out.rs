//! Standard output for the commands' reports, where a reader that goes away
//! early (`status --json | head -1`, `| grep -q`) is a normal end, not an
//! error: `println!` panics on the broken pipe, [`Out`] stops writing.

use std::io::{self, Write};

/// Standard output, locked, that swallows a broken pipe: once the reader
/// has gone, later writes are dropped and report success.
pub struct Out<W: Write = io::StdoutLock<'static>> {
    inner: W,
    closed: bool,
}

impl Out {
    /// The process's standard output.
    pub fn stdout() -> Self {
        Self::new(io::stdout().lock())
    }
}

impl<W: Write> Out<W> {
    /// Writes to `inner`.
    pub fn new(inner: W) -> Self {
        Self { inner, closed: false }
    }

    /// Whether the reader went away.
    pub fn closed(&self) -> bool {
        self.closed
    }

    fn absorb(&mut self, r: io::Result<()>) -> io::Result<()> {
        match r {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(())
            }
            r => r,
        }
    }
}

impl<W: Write> Write for Out<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.closed {
            return Ok(buf.len());
        }
        let r = self.inner.write_all(buf);
        self.absorb(r).map(|()| buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.closed {
            return Ok(());
        }
        let r = self.inner.flush();
        self.absorb(r)
    }
}

/// `writeln!` into a `&mut` [`Out`], an IO error (other than the absorbed broken
/// pipe) becoming the command's `String` error.
#[macro_export]
macro_rules! outln {
    ($o:expr) => { ::std::io::Write::write_all($o, b"\n").map_err(|e| format!("stdout: {e}"))? };
    ($o:expr, $($t:tt)*) => { ::std::io::Write::write_fmt($o, format_args!("{}\n", format_args!($($t)*))).map_err(|e| format!("stdout: {e}"))? };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pipe whose reader left after `room` bytes.
    struct Pipe {
        room: usize,
        got: Vec<u8>,
    }

    impl Write for Pipe {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::Error::from(io::ErrorKind::BrokenPipe));
            }
            let n = buf.len().min(self.room);
            self.room -= n;
            self.got.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn report(o: &mut Out<Pipe>) -> Result<(), String> {
        for i in 0..100 {
            outln!(o, "line {i}");
        }
        outln!(o);
        Ok(())
    }

    #[test]
    fn a_reader_that_leaves_ends_the_output_not_the_command() {
        let mut o = Out::new(Pipe { room: 10, got: Vec::new() });
        assert_eq!(report(&mut o), Ok(()));
        assert!(o.closed());
        assert_eq!(o.inner.got, b"line 0\nlin");
        let mut o = Out::new(Pipe { room: usize::MAX, got: Vec::new() });
        report(&mut o).unwrap();
        assert!(!o.closed() && o.inner.got.ends_with(b"line 99\n\n"));
    }

    #[test]
    fn other_errors_still_fail() {
        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::from(io::ErrorKind::StorageFull))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let o = &mut Out::new(Full);
        let r = (|| -> Result<(), String> {
            outln!(o, "x");
            Ok(())
        })();
        assert!(r.unwrap_err().starts_with("stdout: "));
    }
}
