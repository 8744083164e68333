//! The kiosk screen (`/`) in a real browser: Debian's headless Chromium through
//! chromedriver, its fake camera and microphone playing real photos and a spoken
//! question, against the test binary's one `aisle serve` (real weights).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aisle_runtime::service::{self, Service};
use serde_json::{Value, json};

use aisle_bench::browser::{Browser, Media};
use anyhow::{Context, Result};

/// Where screenshots go: `target/tmp/ui/`, kept after the run as test artefacts.
fn artefacts() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ui")
}

/// The page's address on `addr`.
fn page(addr: SocketAddr) -> String {
    format!("http://{addr}/")
}

/// A browser of `width` x `height` on the page at `addr`.
fn open_page(addr: SocketAddr, width: u32, height: u32, media: Media<'_>) -> Result<Browser> {
    let b = Browser::launch(width, height, media)?;
    b.open(&page(addr))?;
    Ok(b)
}

const WAIT: Duration = Duration::from_secs(90);

fn accept(b: &Browser) -> Result<()> {
    let c = b.testid("consent-accept")?;
    b.click(&c)
}

fn type_question(b: &Browser, q: &str) -> Result<()> {
    let input = b.testid("ask-input")?;
    b.type_text(&input, q)?;
    let submit = b.testid("ask-submit")?;
    b.click(&submit)
}

/// Asks by typing and waits for an answer containing `want`.
fn ask_for(b: &Browser, q: &str, want: &str) -> Result<String> {
    let before = b.text_of("answer")?;
    type_question(b, q)?;
    b.wait_text("answer", WAIT, |t| t != before && t.contains(want))
}

/// The text of the answer once it changed from `before`.
fn next_answer(b: &Browser, before: &str) -> Result<String> {
    b.wait_text("answer", WAIT, |t| t != before && !t.trim().is_empty())
}

/// Every visible element inside the viewport, no text below 20 px, no touch target
/// below 48 px, no content spilling out of a box that does not clip or scroll.
const LAYOUT_CHECK: &str = r#"
const vw = innerWidth, vh = innerHeight, out = [];
const name = (e) => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + (e.dataset.testid ? `[${e.dataset.testid}]` : '') + (e.className && typeof e.className === 'string' ? '.' + e.className.split(' ').join('.') : '');
for (const e of document.querySelectorAll('body *')) {
  if (e.closest('[hidden]') || e.closest('.visually-hidden')) continue;
  const cs = getComputedStyle(e);
  if (cs.display === 'none' || cs.visibility === 'hidden') continue;
  const r = e.getBoundingClientRect();
  if (r.width === 0 || r.height === 0) continue;
  if (r.left < -1 || r.top < -1 || r.right > vw + 1 || r.bottom > vh + 1)
    out.push(`${name(e)} leaves the viewport: ${JSON.stringify(r)}`);
  const own = Array.from(e.childNodes).some((n) => n.nodeType === 3 && n.textContent.trim());
  if (own && parseFloat(cs.fontSize) < 20) out.push(`${name(e)} text ${cs.fontSize}`);
  const target = e.matches('button, input, a[href], [role=button]');
  if (target && (r.width < 48 || r.height < 48)) out.push(`${name(e)} target ${r.width}x${r.height}`);
  const clips = ['hidden', 'auto', 'scroll', 'clip'];
  if (!clips.includes(cs.overflowX) && e.scrollWidth > e.clientWidth + 1 && e.clientWidth > 0)
    out.push(`${name(e)} overflows: ${e.scrollWidth} > ${e.clientWidth}`);
}
return out;
"#;

/// The layout rules and an axe-core scan at the browser's size; a screenshot in the
/// artefacts. Returns the screenshot's path.
fn check_screen(b: &Browser, label: &str) -> Result<PathBuf> {
    let problems = b.js(LAYOUT_CHECK, json!([]))?;
    assert_eq!(problems, json!([]), "{label}: layout problems");
    let axe = axe_source();
    b.js(&format!("{axe}\n;return true;"), json!([]))?;
    let violations = b.js_async(
        "const done = arguments[arguments.length - 1];
         axe.run(document, { resultTypes: ['violations'] }).then(
           (r) => done(r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help,
             nodes: v.nodes.map((n) => n.target.join(' ')) }))),
           (e) => done({ error: String(e) }));",
        json!([]),
    )?;
    let serious: Vec<&Value> = violations
        .as_array()
        .unwrap_or_else(|| panic!("axe failed: {violations}"))
        .iter()
        .filter(|v| matches!(v["impact"].as_str(), Some("serious" | "critical")))
        .collect();
    assert!(
        serious.is_empty(),
        "{label}: axe-core finds serious or critical violations: {serious:#?}"
    );
    let path = artefacts().join(format!("{label}.png"));
    let shot = b.screenshot(&path)?;
    let (w, h) = b
        .js("return [innerWidth, innerHeight]", json!([]))?
        .as_array()
        .map(|a| (a[0].as_u64().unwrap_or(0), a[1].as_u64().unwrap_or(0)))
        .expect("viewport");
    assert_eq!((shot.width() as u64, shot.height() as u64), (w, h));
    let want: Vec<u64> = label
        .split('-')
        .nth(1)
        .and_then(|s| s.split('x').map(|n| n.parse().ok()).collect())
        .expect("label: NAME-WxH");
    assert_eq!(vec![w, h], want, "the viewport is the size under test");
    Ok(path)
}

/// The layout rules and the axe scan fail on a page that breaks them: small text, a
/// small unnamed low-contrast button, a box whose text spills out.
fn checks_catch_what_they_are_for(b: &Browser) -> Result<()> {
    b.js(
        "const d = document.createElement('div'); d.id = 'bad';
         d.innerHTML = '<p style=\"font-size:12px\">tiny</p><button style=\"width:30px;height:30px;color:#777;background:#888\"></button><div style=\"width:50px;white-space:nowrap\">a line far too long for its box</div>';
         document.querySelector('.talk').append(d);",
        json!([]),
    )?;
    let problems = b.js(LAYOUT_CHECK, json!([]))?.to_string();
    for want in ["text 12px", "target 30x30", "overflows"] {
        assert!(problems.contains(want), "{want} not caught: {problems}");
    }
    let axe = axe_source();
    b.js(&format!("{axe}\n;return true;"), json!([]))?;
    let ids = b.js_async(
        "const done = arguments[arguments.length - 1];
         axe.run(document.getElementById('bad')).then((r) => done(r.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical').map((v) => v.id)));",
        json!([]),
    )?;
    assert!(ids.to_string().contains("button-name"), "{ids}");
    b.js("document.getElementById('bad').remove()", json!([]))?;
    Ok(())
}

/// axe-core's script: fetched by the test command (`cargo xtask test`) from npm into
/// the data directory, or where `AISLE_AXE_JS` says.
fn axe_source() -> String {
    let path = std::env::var_os("AISLE_AXE_JS")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::data_dir().join("ui-test").join("axe.min.js"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "axe-core is missing at {} ({e}): `cargo xtask test` fetches it",
            path.display()
        )
    })
}

/// A typed question, a follow-up in the same session, "Start over", and the screen
/// at kiosk size (portrait 1080x1920).
#[test]
fn typed_questions_keep_the_session_until_start_over() -> Result<()> {
    let s = crate::service::server();
    let b = open_page(s.addr, 1080, 1920, Media::default())?;
    // The attract screen shows the privacy notice from the config before anything opens.
    let notice = b.wait_js(
        "return document.getElementById('privacy-notice').innerText",
        WAIT,
    )?;
    assert!(
        notice
            .as_str()
            .unwrap_or("")
            .contains("processed on this kiosk only"),
        "{notice}"
    );
    let camera_open = b.js("return window.aisle.state.cameraOn", json!([]))?;
    assert_eq!(camera_open, json!(false), "no camera before consent");
    accept(&b)?;

    let a = ask_for(&b, "how much are the organic bananas?", "$0.69")?;
    assert!(a.contains("Organic Bananas"), "{a}");
    // The answer card lists the product as the service formats it.
    let card = b.wait_js(
        "const c = document.querySelector('.fact-card[data-sku=\"BAN-1\"]'); return c && c.innerText",
        WAIT,
    )?;
    let card = card.as_str().unwrap_or("");
    assert!(
        card.contains("$0.69") && card.contains("fresh fruits"),
        "{card}"
    );

    let a = ask_for(&b, "and where are they?", "fresh fruits")?;
    assert!(a.contains("Bananas"), "the follow-up used the session: {a}");
    let shot = check_screen(&b, "kiosk-1080x1920")?;
    eprintln!("screenshot: {}", shot.display());
    checks_catch_what_they_are_for(&b)?;

    let start_over = b.testid("start-over")?;
    b.click(&start_over)?;
    b.wait_js("return window.aisle.state.session === null", WAIT)?;
    let before = b.text_of("answer")?;
    type_question(&b, "and where are they?")?;
    let a = next_answer(&b, &before)?;
    assert!(
        !a.contains("Bananas") && a.contains("Which product"),
        "the session was forgotten: {a}"
    );

    // "Call staff" reaches the staff's webhook.
    let called = b.testid("call-staff")?;
    b.click(&called)?;
    b.wait_text("answer", WAIT, |t| t.contains("staff has been called"))?;
    Ok(())
}

/// The spoken question from the fake microphone: a tap, the service's VAD ends it,
/// the transcript and then the answer appear (tablet size, 1280x800).
#[test]
fn a_spoken_question_is_transcribed_and_answered() -> Result<()> {
    let s = crate::service::server();
    let dir = tempfile::tempdir().expect("tmp");
    let (wav, _) = aisle_bench::ui::spoken_question(
        "how much is the banana and where can I find it",
        dir.path(),
        0.5,
        4.0,
    )?;
    // Played once: the page listens over its answer (barge-in), and a looped
    // question would be heard and answered again and again.
    let wav = PathBuf::from(format!("{}%noloop", wav.display()));
    let b = open_page(
        s.addr,
        1280,
        800,
        Media {
            audio: Some(&wav),
            ..Default::default()
        },
    )?;
    accept(&b)?;
    let mic = b.testid("mic-button")?;
    b.click(&mic)?;
    let heard = b.wait_text("transcript", WAIT, |t| t.to_lowercase().contains("banana"))?;
    let a = b.wait_text("answer", WAIT, |t| t.contains("$0.69"))?;
    assert!(a.contains("Bananas"), "{a} (heard {heard:?})");
    // The microphone is closed once the question is heard.
    b.wait_js(
        "return document.querySelector('[data-testid=mic-button]').getAttribute('aria-pressed') === 'false'",
        WAIT,
    )?;
    let m = b.wait_js("return window.aisle.metrics.voice", WAIT)?;
    assert!(
        m[0]["answerPainted"].as_f64() > m[0]["vadEnd"].as_f64(),
        "{m}"
    );
    // The answer is spoken (the question was): its sentences play one after another,
    // the first while the rest are still being made.
    let spoken = b.wait_js(
        "const v = window.aisle.metrics.voice[0]; return v && v.spoken && window.aisle.metrics.spoken",
        WAIT,
    )?;
    let m = b.js("return window.aisle.metrics.voice", json!([]))?;
    assert!(m[0]["firstAudio"].as_f64().is_some(), "{m}");
    assert!(m[0]["spoken"]["sentences"].as_u64() >= Some(2), "{m}");
    assert!(spoken.as_f64() > Some(2.0), "{spoken} s of speech queued");
    drop(b);

    // "Sound off" during the spoken answer stops it at once (barge-in by the screen).
    let b = open_page(
        s.addr,
        1280,
        800,
        Media {
            audio: Some(&wav),
            ..Default::default()
        },
    )?;
    accept(&b)?;
    let mic = b.testid("mic-button")?;
    b.click(&mic)?;
    b.wait_js("return window.aisle.speaking()", WAIT)?;
    let mute = b.testid("mute")?;
    b.click(&mute)?;
    assert_eq!(
        b.js("return window.aisle.speaking()", json!([]))?,
        json!(false)
    );
    assert_eq!(
        b.js(
            "return document.querySelector('[data-testid=mute]').getAttribute('aria-pressed')",
            json!([])
        )?,
        json!("true")
    );
    drop(b);

    // Push-to-talk, in a fresh browser (Chromium's fake microphone plays its file on
    // from where it was, so only a first capture starts at the question): pressed
    // and held through the question, then released; the release closes the
    // microphone and the question is answered.
    let b = open_page(
        s.addr,
        1280,
        800,
        Media {
            audio: Some(&wav),
            ..Default::default()
        },
    )?;
    accept(&b)?;
    let mic = b.testid("mic-button")?;
    b.press_and_hold(&mic, Duration::from_millis(4500))?;
    let pressed = b.js(
        "return document.querySelector('[data-testid=mic-button]').getAttribute('aria-pressed')",
        json!([]),
    )?;
    assert_eq!(
        pressed,
        json!("false"),
        "released: the microphone is closed"
    );
    let a = b.wait_text("answer", WAIT, |t| t.contains("$0.69"))?;
    assert!(a.contains("Bananas"), "{a}");
    let m = b.wait_js("return window.aisle.metrics.voice", WAIT)?;
    assert!(m[0]["server"].is_object(), "{m}");
    Ok(())
}

/// Speaking over the spoken answer stops it, and what the shopper says is the next
/// question: the page listens over its own voice (with the browser's echo
/// canceller) while the answer plays.
#[test]
fn speaking_over_the_answer_stops_it_and_asks_again() -> Result<()> {
    let s = crate::service::server();
    let dir = tempfile::tempdir().expect("tmp");
    // The second question starts 2 s after the first ends: while the first answer
    // (several seconds of speech) is playing.
    let (wav, _) = aisle_bench::ui::spoken_dialogue(
        &[
            ("how much is the banana and where can I find it", 2.0),
            ("where can I find the whole milk", 6.0),
        ],
        dir.path(),
        0.5,
    )?;
    // Played once, not looped: the first question is not heard a second time.
    let once = PathBuf::from(format!("{}%noloop", wav.display()));
    let b = open_page(
        s.addr,
        1280,
        800,
        Media {
            audio: Some(&once),
            ..Default::default()
        },
    )?;
    accept(&b)?;
    let mic = b.testid("mic-button")?;
    b.click(&mic)?;
    b.wait_text("answer", WAIT, |t| t.contains("$0.69"))?;
    let a = b.wait_text("answer", WAIT, |t| t.contains("Whole Milk"))?;
    let m = b.wait_js(
        "const m = window.aisle.metrics.voice; return m.length >= 2 && m",
        WAIT,
    )?;
    let artefact = artefacts().join("barge-in.json");
    let _ = std::fs::write(&artefact, m.to_string());
    // The first answer was cut short by the shopper's voice, not by a button.
    let first = &m[0];
    assert_eq!(first["origin"], json!("tap"), "{m}");
    let second = &m[1];
    assert_eq!(
        second["origin"],
        json!("follow"),
        "listened over the answer: {m}"
    );
    assert!(
        second["bargeIn"].as_f64().is_some(),
        "the second question began while the first answer played: {m}"
    );
    assert!(
        b.wait_text("transcript", WAIT, |t| t.to_lowercase().contains("milk"))
            .is_ok(),
        "{a}"
    );
    // Nothing more is said: the microphone closes a few seconds after the answer.
    b.wait_js(
        "return !window.aisle.speaking() && document.querySelector('[data-testid=mic-button]').getAttribute('aria-pressed') === 'false' && window.aisle.metrics.voice.length >= 3",
        WAIT,
    )?;
    let m = b.js("return window.aisle.metrics.voice", json!([]))?;
    assert_eq!(m[2]["origin"], json!("follow"), "{m}");
    assert!(
        m[2]["vadEnd"].is_null(),
        "nothing was heard after the second answer: {m}"
    );
    Ok(())
}

/// The shelf of `crate::ar::shelf` for Chromium's fake camera.
fn shelf_video(dir: &Path) -> Result<PathBuf> {
    let png = dir.join("shelf.png");
    crate::ar::shelf(&png);
    aisle_bench::ui::camera_video(&png, dir)
}

/// The fake camera shows the cup and the cat food: a card over each, laid out by the
/// service; touching the cup's card answers about the cup. Tablet size.
#[test]
fn camera_cards_over_the_products_answer_when_touched() -> Result<()> {
    let s = crate::service::server();
    let dir = tempfile::tempdir().expect("tmp");
    let video = shelf_video(dir.path())?;
    let b = open_page(
        s.addr,
        1280,
        800,
        Media {
            video: Some(&video),
            ..Default::default()
        },
    )?;
    accept(&b)?;
    let skus = b.wait_js(
        "const s = Array.from(document.querySelectorAll('[data-testid=product-card]'), (c) => c.dataset.sku).sort();
         return s.length === 2 ? s : null",
        WAIT,
    )?;
    assert_eq!(skus, json!(["CAT-1", "COF-1"]));
    // Each card sits beside its own product: the cup is on the left of the shelf.
    let xs = b.js(
        "const x = (s) => document.querySelector(`[data-sku=\"${s}\"]`).getBoundingClientRect().left;
         return [x('COF-1'), x('CAT-1')]",
        json!([]),
    )?;
    assert!(xs[0].as_f64() < xs[1].as_f64(), "{xs}");
    let text = b.js(
        "return document.querySelector('[data-sku=\"COF-1\"]').innerText",
        json!([]),
    )?;
    assert!(text.as_str().unwrap_or("").contains("$8.99"), "{text}");
    let shot = check_screen(&b, "tablet-1280x800-camera")?;
    eprintln!("screenshot: {}", shot.display());

    let cup = b.find("[data-testid=product-card][data-sku=\"COF-1\"]", WAIT)?;
    b.click(&cup)?;
    let a = b.wait_text("answer", WAIT, |t| t.contains("$8.99"))?;
    assert!(a.contains("Espresso"), "{a}");
    // Cards keep coming at the camera's pace; the frames were identified and followed.
    let passes = b.wait_js(
        "const m = window.aisle.metrics.camera; return m.length >= 4 ? m.map((f) => f.pass) : null",
        WAIT,
    )?;
    let passes = passes.as_array().expect("passes");
    assert!(passes.iter().any(|p| p == "identified"), "{passes:?}");
    Ok(())
}

/// Camera and microphone denied: the page says so, and typing still works.
#[test]
fn denied_camera_and_microphone_are_said_plainly() -> Result<()> {
    let s = crate::service::server();
    let b = open_page(s.addr, 1280, 800, Media::denied())?;
    accept(&b)?;
    let note = b.wait_js(
        "return document.getElementById('camera-note').innerText",
        WAIT,
    )?;
    assert!(
        note.as_str().unwrap_or("").contains("camera is turned off"),
        "{note}"
    );
    let mic = b.testid("mic-button")?;
    b.click(&mic)?;
    let a = b.wait_text("answer", WAIT, |t| t.contains("microphone is turned off"))?;
    assert!(a.contains("type your question"), "{a}");
    ask_for(&b, "how much is the sparkling water?", "$0.99")?;
    Ok(())
}

/// A service whose models never finish loading (`serve` would load them).
struct Loading(Arc<Service>);

/// What an [`Instance`] serves.
enum Serves {
    Whole(Arc<Service>),
    Loading(Arc<Service>),
}

impl From<Arc<Service>> for Serves {
    fn from(s: Arc<Service>) -> Self {
        Serves::Whole(s)
    }
}

impl From<Loading> for Serves {
    fn from(s: Loading) -> Self {
        Serves::Loading(s.0)
    }
}

/// A server on a fixed loopback port that can be stopped and started again.
struct Instance {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Instance {
    fn start(addr: SocketAddr, svc: impl Into<Serves>) -> Self {
        let svc = svc.into();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let sock = tokio::net::TcpSocket::new_v4().expect("socket");
                sock.set_reuseaddr(true).expect("reuseaddr");
                sock.bind(addr).expect("bind the same port again");
                let l = sock.listen(64).expect("listen");
                let _ = ready_tx.send(());
                let stop = async {
                    let _ = rx.await;
                };
                match svc {
                    Serves::Whole(svc) => service::serve(l, svc, stop).await.expect("serve"),
                    Serves::Loading(svc) => axum::serve(l, service::router(svc))
                        .with_graceful_shutdown(stop)
                        .await
                        .expect("serve"),
                }
            });
        });
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("listening");
        Self {
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The service stops mid-conversation, comes back unable to answer (503), then
/// comes back whole: the page says each plainly and recovers on its own, and the
/// conversation goes on.
#[test]
fn the_page_survives_a_service_restart() -> Result<()> {
    let main = crate::service::server();
    let kiosk = main.service.kiosk().expect("loaded").clone();
    let cfg = kiosk.config().clone();
    let addr: SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
        l.local_addr().expect("addr")
    };
    let whole = || Service::with_kiosk(cfg.clone(), kiosk.clone(), None);
    let up = Instance::start(addr, whole());
    let b = open_page(addr, 1280, 800, Media::denied())?;
    accept(&b)?;
    ask_for(&b, "how much is the whole milk?", "$3.49")?;

    // Stopped: the page cannot reach it.
    up.stop();
    let before = b.text_of("answer")?;
    type_question(&b, "and where is it?")?;
    b.wait_js(
        "const e = document.getElementById('banner'); return !e.hidden && e.innerText",
        WAIT,
    )?;
    let said = next_answer(&b, &before)?;
    assert!(said.contains("cannot be reached"), "{said}");

    // Back, but still loading its models: every request is a 503.
    let down = Instance::start(addr, Loading(Service::new(cfg.clone(), None)));
    let before = b.text_of("answer")?;
    type_question(&b, "and where is it?")?;
    let said = next_answer(&b, &before)?;
    assert!(said.contains("still loading"), "{said}");
    let banner = b.js(
        "return document.getElementById('banner').innerText",
        json!([]),
    )?;
    assert!(
        banner.as_str().unwrap_or("").contains("back in a moment"),
        "{banner}"
    );
    down.stop();

    // Whole again: the banner goes by itself, and the conversation continues.
    let up = Instance::start(addr, whole());
    b.wait_js("return document.getElementById('banner').hidden", WAIT)?;
    let a = ask_for(&b, "and where is it?", "Whole Milk is in")?;
    assert!(a.contains("milk"), "{a}");
    up.stop();
    Ok(())
}

/// `aisle bench ui` runs end to end (its figures are printed, never asserted).
#[test]
fn the_ui_benchmark_runs() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config = crate::service::bench_config(dir.path(), crate::scan::CATALOG);
    let out = crate::aisle(&[
        "--config",
        &config.to_string_lossy(),
        "--json",
        "bench",
        "ui",
        "--runs",
        "1",
    ]);
    assert!(out.status.success(), "{}", crate::text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout)?;
    for key in [
        "/cold_start/first_contentful_paint_ms",
        "/cold_start/transfer_bytes/js",
        "/camera/page_fps",
        "/voice/end_of_speech_to_answer_painted_ms/p50",
        "/voice/peer_bare_websocket_ms/p50",
    ] {
        assert!(
            v.pointer(key).and_then(Value::as_f64).is_some(),
            "{key} in {v}"
        );
    }
    Ok(())
}

/// The whole page with the keyboard alone: Tab to the consent button, Enter, Tab to
/// the text field, type, Enter; every control is reached by Tab.
#[test]
fn the_keyboard_alone_is_enough() -> Result<()> {
    use aisle_bench::browser::{ENTER, TAB};
    let s = crate::service::server();
    let b = open_page(s.addr, 1280, 800, Media::denied())?;
    b.testid("consent-accept")?;
    let focused = || -> Result<String> {
        Ok(b
            .js(
                "const e = document.activeElement; return e ? (e.dataset.testid || e.id || e.tagName) : ''",
                json!([]),
            )?
            .as_str()
            .unwrap_or("")
            .to_string())
    };
    // Tab until the consent button has the focus.
    let mut order = Vec::new();
    for _ in 0..20 {
        b.keys(&TAB.to_string())?;
        let f = focused()?;
        if f == "consent-accept" {
            break;
        }
        order.push(f);
    }
    assert_eq!(
        focused()?,
        "consent-accept",
        "Tab never reached consent: {order:?}"
    );
    b.keys(&ENTER.to_string())?;
    b.wait_js(
        "return document.getElementById('app').dataset.phase === 'active'",
        WAIT,
    )?;
    // Every control is in the Tab order.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..30 {
        b.keys(&TAB.to_string())?;
        seen.insert(focused()?);
    }
    for id in [
        "ask-input",
        "ask-submit",
        "mic-button",
        "call-staff",
        "start-over",
    ] {
        assert!(seen.contains(id), "{id} is not reached by Tab: {seen:?}");
    }
    // The focus is drawn (a visible outline).
    let outline = b.js(
        "const e = document.querySelector('[data-testid=ask-submit]'); e.focus();
         return getComputedStyle(e).outlineStyle",
        json!([]),
    )?;
    assert_ne!(
        outline,
        json!("none"),
        "the focused button shows no outline"
    );
    b.js(
        "document.querySelector('[data-testid=ask-input]').focus()",
        json!([]),
    )?;
    let before = b.text_of("answer")?;
    b.keys(&format!("how much is the sparkling water?{ENTER}"))?;
    let a = b.wait_text("answer", WAIT, |t| t != before && t.contains("$0.99"))?;
    assert!(a.contains("Sparkling Water"), "{a}");
    Ok(())
}

/// After `dialogue.session_timeout_s` without a touch, the page erases the
/// conversation and goes back to the attract screen (consent asked again).
#[test]
fn an_idle_screen_resets_itself() -> Result<()> {
    let main = crate::service::server();
    let kiosk = main.service.kiosk().context("loaded")?.clone();
    let mut cfg = kiosk.config().clone();
    cfg.file.dialogue.session_timeout_s = 3;
    let addr: SocketAddr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let up = Instance::start(addr, Service::with_kiosk(cfg, kiosk.clone(), None));
    let b = open_page(addr, 1280, 800, Media::denied())?;
    accept(&b)?;
    ask_for(&b, "how much is the whole milk?", "$3.49")?;
    let session = b.js("return window.aisle.state.session", json!([]))?;
    let id = session.as_str().context("a session")?.to_string();
    b.wait_js(
        "return document.getElementById('app').dataset.phase === 'attract' && window.aisle.state.session === null",
        WAIT,
    )?;
    let a = b.text_of("answer")?;
    assert!(!a.contains("$3.49"), "the answer is gone: {a}");
    // The service erased it too (the page said so with DELETE).
    assert!(
        kiosk.sessions().peek(&id).is_none(),
        "session {id} still live"
    );
    up.stop();
    Ok(())
}
