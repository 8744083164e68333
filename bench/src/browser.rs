//! A minimal W3C WebDriver client over Debian's chromedriver and headless Chromium,
//! for the kiosk screen's tests and `aisle bench ui`: a session per browser, commands
//! as JSON over HTTP.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use base64::Engine as _;
use serde_json::{Value, json};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// WebDriver's Tab key.
pub const TAB: char = '\u{E004}';
/// WebDriver's Enter key.
pub const ENTER: char = '\u{E007}';

pub struct Browser {
    driver: Child,
    base: String,
    profile: tempfile::TempDir,
}

/// What the browser's fake devices play.
#[derive(Default)]
pub struct Media<'a> {
    /// A WAV as the microphone (looped).
    pub audio: Option<&'a Path>,
    /// A `.y4m` as the camera (looped).
    pub video: Option<&'a Path>,
    /// Deny camera and microphone instead of granting them.
    pub deny: bool,
}

impl Media<'static> {
    /// Camera and microphone present, their permission refused.
    pub fn denied() -> Self {
        Media {
            deny: true,
            ..Default::default()
        }
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into()
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .context("a free loopback port")?
        .port())
}

impl Browser {
    /// Headless Chromium at `width` x `height` CSS pixels.
    pub fn launch(width: u32, height: u32, media: Media<'_>) -> Result<Self> {
        let port = free_port()?;
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context(
                "cannot start chromedriver (Debian's chromium-driver; `cargo xtask setup` installs it)",
            )?;
        let mut b = Self {
            driver,
            base: format!("http://127.0.0.1:{port}"),
            profile: tempfile::tempdir().context("a browser profile directory")?,
        };
        let t = Instant::now();
        while agent().get(&format!("{}/status", b.base)).call().is_err() {
            ensure!(
                t.elapsed() < Duration::from_secs(20),
                "chromedriver did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut args: Vec<String> = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            "--autoplay-policy=no-user-gesture-required",
        ]
        .map(String::from)
        .to_vec();
        args.push(format!("--window-size={width},{height}"));
        args.push(format!("--user-data-dir={}", b.profile.path().display()));
        // Fake devices always (a camera and a microphone exist); the permission is
        // granted without a prompt, or refused as a shopper tapping "Block" would.
        args.push("--use-fake-device-for-media-stream".into());
        args.push(if media.deny {
            "--deny-permission-prompts".into()
        } else {
            "--use-fake-ui-for-media-stream".into()
        });
        if let Some(a) = media.audio {
            args.push(format!("--use-file-for-fake-audio-capture={}", a.display()));
        }
        if let Some(v) = media.video {
            args.push(format!("--use-file-for-fake-video-capture={}", v.display()));
        }
        let v = b.send(
            "POST",
            "/session",
            json!({ "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": { "binary": "/usr/bin/chromium", "args": args },
            } } }),
        )?;
        let id = v["sessionId"]
            .as_str()
            .with_context(|| format!("chromedriver gave no session: {v}"))?
            .to_string();
        b.base = format!("{}/session/{id}", b.base);
        b.send("POST", "/timeouts", json!({ "script": 60_000 }))?;
        // The viewport itself at the size asked for (the window's would include the
        // browser's own frame).
        b.send(
            "POST",
            "/goog/cdp/execute",
            json!({ "cmd": "Emulation.setDeviceMetricsOverride", "params": {
                "width": width, "height": height, "deviceScaleFactor": 1, "mobile": false,
            } }),
        )?;
        Ok(b)
    }

    fn send(&self, method: &str, path: &str, body: Value) -> Result<Value> {
        let url = format!("{}{path}", self.base);
        let a = agent();
        let r = match method {
            "GET" => a.get(&url).call(),
            "DELETE" => a.delete(&url).call(),
            _ => a
                .post(&url)
                .header("Content-Type", "application/json")
                .send(body.to_string().as_bytes()),
        };
        let mut r = r.with_context(|| format!("WebDriver {method} {path}"))?;
        let status = r.status().as_u16();
        let v: Value = r
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_json()
            .unwrap_or(Value::Null);
        ensure!(status < 300, "WebDriver {method} {path}: {status} {v}");
        Ok(v["value"].clone())
    }

    /// Resident memory of this browser's processes (those started with its
    /// profile), MiB.
    pub fn rss_mib(&self) -> Option<f64> {
        let needle = format!("--user-data-dir={}", self.profile.path().display());
        let mut kib = 0.0;
        for e in std::fs::read_dir("/proc").ok()?.flatten() {
            let p = e.path();
            let Ok(cmd) = std::fs::read(p.join("cmdline")) else {
                continue;
            };
            if !String::from_utf8_lossy(&cmd).contains(&needle) {
                continue;
            }
            if let Ok(status) = std::fs::read_to_string(p.join("status")) {
                kib += status
                    .lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse::<f64>().ok())
                    .unwrap_or(0.0);
            }
        }
        (kib > 0.0).then_some(kib / 1024.0)
    }

    pub fn open(&self, url: &str) -> Result<()> {
        self.send("POST", "/url", json!({ "url": url })).map(drop)
    }

    /// Runs `script` (a function body; `arguments` are `args`) and returns its value.
    pub fn js(&self, script: &str, args: Value) -> Result<Value> {
        self.send(
            "POST",
            "/execute/sync",
            json!({ "script": script, "args": args }),
        )
    }

    /// Runs `script`, which calls `arguments[arguments.length - 1](value)` when done.
    pub fn js_async(&self, script: &str, args: Value) -> Result<Value> {
        self.send(
            "POST",
            "/execute/async",
            json!({ "script": script, "args": args }),
        )
    }

    /// The element matching `css`, waiting up to `wait` for it.
    pub fn find(&self, css: &str, wait: Duration) -> Result<String> {
        let t = Instant::now();
        loop {
            let v = self.send(
                "POST",
                "/elements",
                json!({ "using": "css selector", "value": css }),
            )?;
            if let Some(e) = v.get(0).and_then(|e| e[ELEMENT].as_str()) {
                return Ok(e.to_string());
            }
            ensure!(t.elapsed() < wait, "no element {css} after {wait:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn testid(&self, id: &str) -> Result<String> {
        self.find(&format!("[data-testid={id:?}]"), Duration::from_secs(10))
    }

    pub fn click(&self, element: &str) -> Result<()> {
        self.send("POST", &format!("/element/{element}/click"), json!({}))
            .map(drop)
    }

    pub fn type_text(&self, element: &str, text: &str) -> Result<()> {
        self.send(
            "POST",
            &format!("/element/{element}/value"),
            json!({ "text": text }),
        )
        .map(drop)
    }

    /// Types `keys` on the keyboard, into whatever has the focus (WebDriver key codes:
    /// [`TAB`], [`ENTER`]).
    pub fn keys(&self, keys: &str) -> Result<()> {
        let mut actions = Vec::new();
        for c in keys.chars() {
            actions.push(json!({ "type": "keyDown", "value": c.to_string() }));
            actions.push(json!({ "type": "keyUp", "value": c.to_string() }));
        }
        self.send(
            "POST",
            "/actions",
            json!({ "actions": [{ "type": "key", "id": "keyboard", "actions": actions }] }),
        )
        .map(drop)
    }

    /// Presses the mouse on `element`, holds it `hold`, releases it.
    pub fn press_and_hold(&self, element: &str, hold: Duration) -> Result<()> {
        self.send(
            "POST",
            "/actions",
            json!({ "actions": [{
                "type": "pointer", "id": "mouse", "parameters": { "pointerType": "mouse" },
                "actions": [
                    { "type": "pointerMove", "origin": { ELEMENT: element }, "x": 0, "y": 0 },
                    { "type": "pointerDown", "button": 0 },
                    { "type": "pause", "duration": hold.as_millis() as u64 },
                    { "type": "pointerUp", "button": 0 },
                ],
            }] }),
        )
        .map(drop)
    }

    /// The visible text of the `data-testid` element.
    pub fn text_of(&self, testid: &str) -> Result<String> {
        Ok(self
            .js(
                "const e = document.querySelector(`[data-testid=\"${arguments[0]}\"]`); return e ? e.innerText : null;",
                json!([testid]),
            )?
            .as_str()
            .unwrap_or("")
            .to_string())
    }

    /// Waits until the `data-testid` element's text satisfies `ok`; returns it.
    pub fn wait_text(
        &self,
        testid: &str,
        wait: Duration,
        ok: impl Fn(&str) -> bool,
    ) -> Result<String> {
        let t = Instant::now();
        loop {
            let s = self.text_of(testid)?;
            if ok(&s) {
                return Ok(s);
            }
            if t.elapsed() > wait {
                let banner = self.js(
                    "const b = document.getElementById('banner'); return b && b.innerText",
                    json!([]),
                )?;
                bail!(
                    "{testid} never became what was expected after {wait:?}: {s:?} (banner: {banner})"
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Polls `script` (returning a value) until it is truthy.
    pub fn wait_js(&self, script: &str, wait: Duration) -> Result<Value> {
        let t = Instant::now();
        loop {
            let v = self.js(script, json!([]))?;
            let truthy = match &v {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Array(a) => !a.is_empty(),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return Ok(v);
            }
            ensure!(t.elapsed() < wait, "never true after {wait:?}: {script}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A PNG of the viewport, written to `path`.
    pub fn screenshot(&self, path: &Path) -> Result<image::RgbaImage> {
        let v = self.send("GET", "/screenshot", Value::Null)?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().context("the screenshot is not text")?)
            .context("the screenshot is not base64")?;
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d).with_context(|| format!("create {}", d.display()))?;
        }
        std::fs::write(path, &png).with_context(|| format!("write {}", path.display()))?;
        Ok(image::load_from_memory(&png)
            .context("the screenshot is not a PNG")?
            .to_rgba8())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = agent().delete(&self.base).call();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
