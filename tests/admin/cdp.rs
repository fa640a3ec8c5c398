//! A headless Chromium driven over the DevTools protocol on a pipe
//! (`--remote-debugging-pipe`: JSON messages ending in a NUL byte, read by
//! Chromium from its fd 3 and written to its fd 4). `sh` moves the test's
//! pipes onto fds 3 and 4, so no `unsafe` and no extra crate is needed.
//! Every wait is bounded ([`TIMEOUT`]).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Longest wait for one answer or event.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// Whether Debian's `chromium` is installed.
pub fn available() -> bool {
    Command::new("chromium").arg("--version").output().is_ok_and(|o| o.status.success())
}

/// A running browser with one page attached.
pub struct Browser {
    child: Child,
    to: ChildStdin,
    from: Receiver<Value>,
    next: u64,
    session: String,
    events: Vec<Value>,
}

impl Browser {
    /// Start Chromium (profile in `profile`, log in `log`) trusting the
    /// server certificate whose SPKI SHA-256 is `spki` (base64), and open a
    /// page of `width`×`height` CSS pixels.
    pub fn start(profile: &Path, log: &Path, spki: &str, width: u32, height: u32) -> Self {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg("exec \"$0\" \"$@\" 3<&0 4>&1 </dev/null >&2")
            .arg("chromium")
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--remote-debugging-pipe",
                &format!("--user-data-dir={}", profile.display()),
                &format!("--ignore-certificate-errors-spki-list={spki}"),
                &format!("--window-size={width},{height}"),
                "about:blank",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).expect("chromium log"))
            .spawn()
            .expect("start chromium");
        let to = child.stdin.take().expect("pipe to chromium");
        let mut from_chromium = BufReader::new(child.stdout.take().expect("pipe from chromium"));
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            loop {
                let mut msg = Vec::new();
                match from_chromium.read_until(0, &mut msg) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                msg.pop();
                let Ok(v) = serde_json::from_slice::<Value>(&msg) else { continue };
                if tx.send(v).is_err() {
                    return;
                }
            }
        });
        let mut b = Self { child, to, from: rx, next: 0, session: String::new(), events: Vec::new() };
        let target = b.call_browser("Target.createTarget", json!({"url": "about:blank"}));
        let id = target["targetId"].as_str().expect("targetId").to_string();
        let attached = b.call_browser("Target.attachToTarget", json!({"targetId": id, "flatten": true}));
        b.session = attached["sessionId"].as_str().expect("sessionId").to_string();
        b.call("Page.enable", json!({}));
        b.call("Runtime.enable", json!({}));
        b
    }

    #[allow(clippy::disallowed_methods)] // a real process: a bounded wait
    fn send(&mut self, method: &str, params: Value, session: bool) -> Value {
        self.next += 1;
        let id = self.next;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if session {
            msg["sessionId"] = json!(self.session);
        }
        let mut bytes = msg.to_string().into_bytes();
        bytes.push(0);
        self.to.write_all(&bytes).expect("write to chromium");
        let start = Instant::now();
        loop {
            let v = self.recv(start);
            if v["id"].as_u64() == Some(id) {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
            if v.get("method").is_some() {
                self.events.push(v);
            }
        }
    }

    fn recv(&mut self, start: Instant) -> Value {
        let left = TIMEOUT.saturating_sub(start.elapsed());
        match self.from.recv_timeout(left) {
            Ok(v) => v,
            Err(RecvTimeoutError::Timeout) => panic!("chromium did not answer within {TIMEOUT:?}"),
            Err(RecvTimeoutError::Disconnected) => panic!("chromium exited"),
        }
    }

    fn call_browser(&mut self, method: &str, params: Value) -> Value {
        self.send(method, params, false)
    }

    /// A command to the page.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.send(method, params, true)
    }

    /// Wait for the page's event `name` (events seen earlier are dropped
    /// by [`Browser::forget_events`]).
    #[allow(clippy::disallowed_methods)] // a real process: a bounded wait
    pub fn wait_event(&mut self, name: &str) -> Value {
        let start = Instant::now();
        loop {
            if let Some(i) = self.events.iter().position(|e| e["method"] == name) {
                return self.events.remove(i);
            }
            let v = self.recv(start);
            if v.get("method").is_some() {
                self.events.push(v);
            }
        }
    }

    /// Drop the events received so far.
    pub fn forget_events(&mut self) {
        self.events.clear();
        while let Ok(v) = self.from.try_recv() {
            drop(v);
        }
    }

    /// Load `url` and wait until it has loaded.
    pub fn goto(&mut self, url: &str) {
        self.forget_events();
        let r = self.call("Page.navigate", json!({"url": url}));
        assert!(r.get("errorText").is_none(), "{url}: {r}");
        self.wait_event("Page.loadEventFired");
    }

    /// Run `js` in the page and wait for the page it leads to (a form
    /// submitted, a link followed).
    pub fn act_and_wait(&mut self, js: &str) {
        self.forget_events();
        self.eval(js);
        self.wait_event("Page.loadEventFired");
    }

    /// The value of the expression `js` in the page (JSON).
    pub fn eval(&mut self, js: &str) -> Value {
        let r = self.call("Runtime.evaluate", json!({"expression": js, "returnByValue": true}));
        assert!(r.get("exceptionDetails").is_none(), "{js}: {r}");
        r["result"]["value"].clone()
    }

    /// Text content of the first element matching `selector` ("" if none).
    pub fn text(&mut self, selector: &str) -> String {
        let js = format!("(document.querySelector({}) || {{textContent: ''}}).textContent.trim()", json!(selector));
        self.eval(&js).as_str().unwrap_or_default().to_string()
    }

    /// Emulate a screen of `width`×`height` CSS pixels (`mobile`: a phone).
    pub fn viewport(&mut self, width: u32, height: u32, mobile: bool) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
        );
    }

    /// A PNG screenshot of the page, written to `to`.
    pub fn screenshot(&mut self, to: &Path) {
        let r = self.call("Page.captureScreenshot", json!({"format": "png", "captureBeyondViewport": true}));
        let png = base64(r["data"].as_str().expect("screenshot data"));
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        if let Some(d) = to.parent() {
            std::fs::create_dir_all(d).expect("artifacts dir");
        }
        std::fs::write(to, png).expect("write screenshot");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Decode standard base64 (padding optional).
pub fn base64(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0);
    for v in s.bytes().filter_map(val) {
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}
