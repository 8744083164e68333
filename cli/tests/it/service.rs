//! `aisle serve` for real: the service on an ephemeral loopback port, every model
//! loaded once (real weights), requests over HTTP and WebSocket as a client sends them.
//! One server for the whole test binary.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use aisle_runtime::service::{self, Service};
use serde_json::{Value, json};

pub(crate) struct Server {
    pub addr: SocketAddr,
    /// The service behind `addr` (its kiosk serves other listeners in the UI tests).
    pub service: std::sync::Arc<Service>,
    /// `/health` statuses seen while the models loaded, first to last.
    health: Vec<u16>,
    dir: tempfile::TempDir,
}

pub(crate) fn server() -> &'static Server {
    static S: OnceLock<Server> = OnceLock::new();
    S.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tmp");
        let csv = dir.path().join("products.csv");
        std::fs::write(&csv, crate::scan::CATALOG).expect("csv");
        let config = dir.path().join("aisle.toml");
        std::fs::write(dir.path().join("staff.token"), format!("{STAFF_TOKEN}\n")).expect("token");
        std::fs::write(
            &config,
            format!(
                "[device]\nname = \"test-kiosk\"\n\n[paths]\ndata_dir = {:?}\nmodel_dir = {:?}\ncatalog = {:?}\n\n[inference]\nthreads = 2\n\n[service]\nstaff_token_file = \"staff.token\"\nstaff_webhook = \"http://{}/hook\"\n",
                dir.path().join("data"),
                crate::data_dir().join("models"),
                csv,
                webhook(),
            ),
        )
        .expect("config");
        let cfg = aisle_firmware_config::load(Some(&config), &Default::default()).expect("config");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let svc = Service::new(
            cfg,
            Some(std::sync::Arc::new(aisle_ar_render::SharedRenderer::get())),
        );
        let served = svc.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let l = tokio::net::TcpListener::from_std(listener).expect("listener");
                service::serve(l, served, std::future::pending())
                    .await
                    .expect("serve");
            });
        });
        let mut health = Vec::new();
        let t = Instant::now();
        loop {
            let (status, body) = get_at(addr, "/health");
            if health.last() != Some(&status) {
                health.push(status);
            }
            if status == 200 {
                break;
            }
            assert_eq!(status, 503, "{body}");
            assert_eq!(body["status"], "loading", "{body}");
            assert!(t.elapsed() < Duration::from_secs(600), "models never loaded");
            std::thread::sleep(Duration::from_millis(100));
        }
        Server {
            addr,
            service: svc,
            health,
            dir,
        }
    })
}

const STAFF_TOKEN: &str = "s3cret-staff-token";

/// What the staff webhook received, one body per call.
static HOOKED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// A loopback HTTP listener standing in for the store's staff system.
fn webhook() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { continue };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // Headers, then as many body bytes as Content-Length says.
            while let Ok(n) = c.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if body.len() >= len {
                        HOOKED.lock().expect("hooked").push(body.to_string());
                        break;
                    }
                }
            }
            let _ =
                c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    addr
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into()
}

fn parse(status: u16, body: &[u8]) -> (u16, Value) {
    let v = serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()));
    (status, v)
}

fn get_at(addr: SocketAddr, path: &str) -> (u16, Value) {
    let mut r = agent()
        .get(&format!("http://{addr}{path}"))
        .call()
        .expect("GET");
    let status = r.status().as_u16();
    let body = r.body_mut().read_to_vec().expect("body");
    parse(status, &body)
}

fn get(path: &str) -> (u16, Value) {
    get_at(server().addr, path)
}

fn post_raw(path: &str, content_type: &str, body: &[u8]) -> (u16, Vec<u8>, String) {
    let mut r = agent()
        .post(&format!("http://{}{path}", server().addr))
        .header("Content-Type", content_type)
        .send(body)
        .expect("POST");
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = r
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_vec()
        .expect("body");
    (status, body, ct)
}

fn post(path: &str, content_type: &str, body: &[u8]) -> (u16, Value) {
    let (status, body, _) = post_raw(path, content_type, body);
    parse(status, &body)
}

fn ask(body: Value) -> (u16, Value) {
    post("/v1/ask", "application/json", body.to_string().as_bytes())
}

/// An error answer: the status, the one JSON shape, a message naming the problem.
fn assert_error(got: &(u16, Value), status: u16, needle: &str) {
    let (s, v) = got;
    assert_eq!(*s, status, "{v}");
    let m = v["error"]["message"].as_str().unwrap_or("");
    assert!(v["error"]["code"].is_string(), "{v}");
    assert!(m.contains(needle), "missing {needle:?} in {v}");
}

/// The service still answers normally.
fn assert_alive() {
    let (s, v) = ask(json!({ "text": "how much is the whole milk?" }));
    assert_eq!(s, 200, "{v}");
    assert!(v["answer"].as_str().unwrap_or("").contains("$3.49"), "{v}");
}

#[test]
fn health_is_503_while_the_models_load_then_200() {
    let s = server();
    assert_eq!(s.health, [503, 200]);
    let (status, v) = get("/health");
    assert_eq!(status, 200);
    assert_eq!(v["status"], "ok");
    assert_eq!(v["device"], "test-kiosk");
    // 8 from the file, more once the staff import test has run.
    assert!(v["products"].as_u64().is_some_and(|n| n >= 8), "{v}");
    assert_eq!(v["llm"], true, "{v}");
}

#[test]
fn the_kiosk_describes_itself_and_its_privacy_rules() {
    let (s, v) = get("/v1/kiosk");
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["device"], "test-kiosk");
    assert_eq!(v["privacy"]["consent_prompt"], true, "{v}");
    assert_eq!(v["privacy"]["persist_audio"], false, "{v}");
    assert_eq!(v["session_timeout_s"], 120, "{v}");
    let notice = v["privacy"]["notice"].to_string();
    assert!(notice.contains("processed on this kiosk only"), "{v}");
    assert!(!notice.contains("Debugging is on"), "{v}");
}

#[test]
fn answers_are_grounded_and_conversations_stay_apart() {
    let (s, a) = ask(json!({ "text": "How much is the whole milk?" }));
    assert_eq!(s, 200, "{a}");
    assert_eq!(a["products"], json!(["MLK-1"]), "{a}");
    assert!(a["answer"].as_str().unwrap_or("").contains("$3.49"), "{a}");
    assert_eq!(a["path"], "grammar");
    let milk = a["session"].as_str().expect("session id").to_string();
    assert_eq!(milk.len(), 32);

    let (_, b) = ask(json!({ "text": "how much are the organic bananas?" }));
    let bananas = b["session"].as_str().expect("session").to_string();
    assert_ne!(milk, bananas);

    // Both conversations at once: each "where is it?" is about its own product.
    let follow = |id: String| {
        std::thread::spawn(move || ask(json!({ "text": "and where is it?", "session": id })))
    };
    let (m, b) = (follow(milk.clone()), follow(bananas.clone()));
    let (m, b) = (m.join().expect("milk"), b.join().expect("bananas"));
    assert_eq!(m.1["products"], json!(["MLK-1"]), "{}", m.1);
    assert_eq!(m.1["session"], json!(milk));
    assert!(
        m.1["answer"].as_str().unwrap_or("").contains("milk"),
        "{}",
        m.1
    );
    assert_eq!(b.1["products"], json!(["BAN-1"]), "{}", b.1);
    assert!(
        b.1["answer"]
            .as_str()
            .unwrap_or("")
            .contains("fresh fruits"),
        "{}",
        b.1
    );

    // An unknown (or expired) session starts a new conversation, with no product.
    let (s, v) = ask(json!({ "text": "where is it?", "session": "no-such-session" }));
    assert_eq!(s, 200, "{v}");
    assert_ne!(v["session"], "no-such-session");
    assert_eq!(v["products"], json!([]), "{v}");
    assert!(
        v["answer"].as_str().unwrap_or("").contains("Which product"),
        "{v}"
    );

    // "How much is this" with the product in front of the camera.
    let (_, v) = ask(json!({ "text": "how much is this?", "sku": "PAP-1" }));
    assert!(v["answer"].as_str().unwrap_or("").contains("$6.99"), "{v}");
    assert_error(
        &ask(json!({ "text": "how much is this?", "sku": "NOPE" })),
        404,
        "NOPE",
    );

    // Ending a session erases it; a second end finds nothing.
    let url = format!("http://{}/v1/sessions/{milk}", server().addr);
    let r = agent().delete(&url).call().expect("DELETE");
    assert_eq!(r.status().as_u16(), 204);
    let r = agent().delete(&url).call().expect("DELETE");
    assert_eq!(r.status().as_u16(), 404);
    let (_, v) = ask(json!({ "text": "and where is it?", "session": milk }));
    assert_eq!(
        v["products"],
        json!([]),
        "an erased session keeps nothing: {v}"
    );
}

#[test]
fn the_llm_fallback_answers_over_http() {
    let (s, v) = ask(json!({ "text": "what's the damage on the sparkling water?" }));
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["path"], "llm", "{v}");
    assert!(v["answer"].as_str().unwrap_or("").contains("$0.99"), "{v}");
}

#[test]
fn products_and_search() {
    let (s, v) = get("/v1/products/COF-1");
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["product"]["name"], "Espresso Roast Ground Coffee");
    assert_eq!(v["product"]["price_cents"], 899);
    assert_eq!(v["stock"][0]["quantity"], 12);
    assert_error(&get("/v1/products/NOPE"), 404, "NOPE");
    let (s, v) = get("/v1/search?q=sparkling%20watr");
    assert_eq!(s, 200, "{v}");
    assert_eq!(v[0]["sku"], "WAT-1", "{v}");
    assert_error(&get("/v1/search"), 400, "?q=");
    assert_error(&get("/v1/nothing-here"), 404, "no such endpoint");
}

#[test]
fn scan_transcribe_and_overlay_round_trip() {
    let photo = std::fs::read(crate::scan::photo("coffee.png")).expect("photo");
    let (s, v) = post("/v1/scan", "image/png", &photo);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["decision"], "identified", "{v}");
    assert_eq!(v["matches"][0]["sku"], "COF-1", "{v}");

    let wav = server().dir.path().join("q.wav");
    crate::speak("how much is the banana", &wav);
    let (s, v) = post(
        "/v1/transcribe",
        "audio/wav",
        &std::fs::read(&wav).expect("wav"),
    );
    assert_eq!(s, 200, "{v}");
    let text = v["text"].as_str().unwrap_or("").to_lowercase();
    assert!(text.contains("banana"), "{v}");
    assert_eq!(v["source"]["sample_rate"], 22050, "{v}");

    let frame = server().dir.path().join("shelf.png");
    crate::ar::shelf(&frame);
    let frame = std::fs::read(&frame).expect("frame");
    let mut r = agent()
        .post(&format!("http://{}/v1/overlay", server().addr))
        .header("Accept", "application/json")
        .send(&frame[..])
        .expect("POST");
    assert_eq!(r.status().as_u16(), 200);
    let v: Value = r.body_mut().read_json().expect("json");
    let mut skus: Vec<&str> = v["overlay"]["cards"]
        .as_array()
        .expect("cards")
        .iter()
        .filter_map(|c| c["sku"].as_str())
        .collect();
    skus.sort();
    assert_eq!(skus, ["CAT-1", "COF-1"], "{v}");
    // Without Accept: JSON, the frame with its cards drawn, as PNG.
    let (s, png, ct) = post_raw("/v1/overlay", "image/png", &frame);
    assert_eq!((s, ct.as_str()), (200, "image/png"));
    let picture = image::load_from_memory(&png).expect("a PNG").to_rgb8();
    assert_eq!(picture.dimensions(), (1280, 720));
    // Privacy by default: no photo, frame or audio was kept.
    assert!(!server().dir.path().join("data/debug").exists());
}

#[test]
fn bad_input_gets_a_clear_4xx_and_the_service_keeps_answering() {
    let photo = std::fs::read(crate::scan::photo("coffee.png")).expect("photo");
    assert_error(
        &post("/v1/scan", "image/png", &photo[..photo.len() / 2]),
        422,
        "request body",
    );
    assert_alive();
    let jpeg = std::fs::read(crate::scan::photo("rocket.jpg")).expect("photo");
    assert_error(
        &post("/v1/scan", "image/jpeg", &jpeg[..2000]),
        422,
        "request body",
    );
    assert_error(&post("/v1/scan", "image/png", b""), 400, "empty");
    assert_error(
        &get("/v1/search?q=milk&top=0"),
        400,
        "top must be between 1 and 100",
    );
    // serde would read a struct from an array; the API takes objects only.
    assert_error(
        &post("/v1/ask", "application/json", b"[\"how much is the milk\"]"),
        400,
        "must be a JSON object",
    );
    assert_error(
        &post("/v1/call-staff", "application/json", b"[]"),
        400,
        "must be a JSON object",
    );
    assert_error(&post("/v1/transcribe", "audio/wav", b""), 400, "empty");
    assert_error(
        &post("/v1/transcribe", "audio/wav", b"RIFF....WAVEfmt "),
        422,
        "request body",
    );
    assert_alive();
    assert_error(
        &post("/v1/ask", "application/json", b"{\"text\": "),
        400,
        "not valid JSON",
    );
    assert_error(
        &post("/v1/ask", "application/json", b"{\"question\": \"hi\"}"),
        400,
        "unknown field",
    );
    assert_error(
        &post("/v1/ask", "application/json", b"{\"text\": \"caf\xe9\"}"),
        400,
        "UTF-8",
    );
    assert_alive();

    // 200 MB announced: refused from the header alone, before any of it is sent.
    let mut tcp = std::net::TcpStream::connect(server().addr).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    write!(
        tcp,
        "POST /v1/scan HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: {}\r\n\r\n",
        200u64 << 20
    )
    .expect("write");
    let mut head = [0u8; 512];
    let n = tcp.read(&mut head).expect("read");
    let head = String::from_utf8_lossy(&head[..n]);
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    assert!(head.contains("too_large"), "{head}");
    // A body that keeps coming without a length is cut at the limit.
    let big = vec![0u8; service::MAX_JSON_BYTES + 10];
    assert_error(&post("/v1/ask", "application/json", &big), 413, "larger");
    assert_alive();
}

#[test]
fn a_catalog_change_while_serving_shows_in_the_next_answer() {
    let (_, v) = ask(json!({ "text": "how much is the space shuttle model kit?" }));
    assert!(v["answer"].as_str().unwrap_or("").contains("$24.99"), "{v}");
    // Another process (here: this test) imports a new price into the database.
    let csv = server().dir.path().join("update.csv");
    std::fs::write(
        &csv,
        "sku,name,price,stock,aisle\nTOY-1,Space Shuttle Model Kit,19.99,3,toys\n",
    )
    .expect("csv");
    let mut cat = aisle_runtime::catalog::CatalogDb::open(
        &server().dir.path().join("data/catalog/store.sqlite"),
    )
    .expect("catalog");
    aisle_runtime::catalog::import_file(&mut cat, &csv, &Default::default()).expect("import");
    let (_, v) = ask(json!({ "text": "how much is the space shuttle model kit?" }));
    assert!(v["answer"].as_str().unwrap_or("").contains("$19.99"), "{v}");
}

#[test]
fn metrics_count_requests_by_route() {
    assert_alive();
    let mut r = agent()
        .get(&format!("http://{}/metrics", server().addr))
        .call()
        .expect("GET");
    let text = r.body_mut().read_to_string().expect("text");
    assert!(
        text.contains("aisle_requests_total{method=\"POST\",route=\"/v1/ask\",status=\"200\"}"),
        "{text}"
    );
    assert!(
        text.contains("aisle_request_seconds_bucket{route=\"/v1/ask\",le=\"+Inf\"}"),
        "{text}"
    );
    assert!(
        text.contains("aisle_stage_seconds_count{stage=\"answer\"}"),
        "{text}"
    );
    assert!(
        text.contains("aisle_model_load_seconds{part=\"llm\"}"),
        "{text}"
    );
    assert!(text.contains("aisle_ready 1"), "{text}");
    assert!(text.contains("aisle_answers_withheld_total "), "{text}");
}

/// A voice run: an espeak question streamed at real-time pace, 20 ms per frame.
#[test]
fn a_voice_run_streams_a_question_and_gets_a_grounded_answer() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let wav = server().dir.path().join("voice.wav");
    crate::speak("how much is the banana", &wav);
    let audio = aisle_speech::decode_wav(&wav).expect("decode");
    let pcm: Vec<u8> = audio
        .samples
        .iter()
        .chain(std::iter::repeat_n(&0.0f32, 16_000)) // a second of silence after
        .flat_map(|s| ((s * 32767.0) as i16).to_le_bytes())
        .collect();
    let url = format!("ws://{}/v1/voice", server().addr);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let events: Vec<Value> = rt.block_on(async move {
        let (mut ws, _) = tokio_tungstenite::connect_async(&url)
            .await
            .expect("connect");
        // Garbage first: each gets an error, the connection stays.
        ws.send(Message::Text("hello?".into())).await.expect("send");
        ws.send(Message::Text(r#"{"type":"stop"}"#.into()))
            .await
            .expect("send");
        // `end` with no run open is ignored (a run the VAD ended), as are stray
        // audio frames between runs: no error for either.
        ws.send(Message::Text(r#"{"type":"end"}"#.into()))
            .await
            .expect("send");
        ws.send(Message::Binary(vec![0u8; 640].into()))
            .await
            .expect("send");
        ws.send(Message::Text(r#"{"type":"start","sample_rate":3}"#.into()))
            .await
            .expect("send");
        let mut errors = 0;
        while errors < 3 {
            let Some(Ok(Message::Text(t))) = ws.next().await else {
                panic!("closed")
            };
            let v: Value = serde_json::from_str(t.as_str()).expect("json");
            assert_eq!(v["type"], "error", "{v}");
            errors += 1;
        }
        ws.send(Message::Text(
            json!({ "type": "start", "sample_rate": 16000 })
                .to_string()
                .into(),
        ))
        .await
        .expect("start");
        let (mut tx, mut rx) = ws.split();
        let sender = tokio::spawn(async move {
            for chunk in pcm.chunks(640) {
                if tx
                    .send(Message::Binary(chunk.to_vec().into()))
                    .await
                    .is_err()
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let _ = tx.send(Message::Text(r#"{"type":"end"}"#.into())).await;
        });
        let mut events = Vec::new();
        while let Some(Ok(m)) = rx.next().await {
            if let Message::Text(t) = m {
                let v: Value = serde_json::from_str(t.as_str()).expect("json");
                let end = v["type"] == "run-end";
                events.push(v);
                if end {
                    break;
                }
            }
        }
        sender.abort();
        events
    });
    let types: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    let pos = |t: &str| {
        types
            .iter()
            .position(|x| *x == t)
            .unwrap_or_else(|| panic!("no {t} in {types:?}"))
    };
    assert!(pos("run-start") < pos("vad-start"), "{types:?}");
    assert!(pos("vad-start") < pos("vad-end"), "{types:?}");
    assert!(pos("vad-end") < pos("stt-end"), "{types:?}");
    assert!(pos("stt-end") < pos("intent-end"), "{types:?}");
    assert!(pos("intent-end") < pos("run-end"), "{types:?}");
    let heard = events[pos("stt-end")]["text"]
        .as_str()
        .unwrap_or("")
        .to_lowercase();
    assert!(heard.contains("banana"), "{heard}");
    let answer = &events[pos("intent-end")]["answer"];
    assert!(
        answer["answer"].as_str().unwrap_or("").contains("$0.69"),
        "{answer}"
    );
    assert_eq!(answer["products"], json!(["BAN-1"]), "{answer}");
    let t = &events[pos("run-end")]["timings_ms"];
    assert!(t["end_of_speech_to_answer"].as_f64().is_some(), "{t}");
    assert_alive();
}

fn staff_get(path: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = agent().get(&format!("http://{}{path}", server().addr));
    if let Some(t) = token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    let mut r = req.call().expect("GET");
    let status = r.status().as_u16();
    let body = r.body_mut().read_to_vec().expect("body");
    parse(status, &body)
}

fn staff_post(path: &str, content_type: &str, body: &[u8]) -> (u16, Value) {
    let mut r = agent()
        .post(&format!("http://{}{path}", server().addr))
        .header("Content-Type", content_type)
        .header("Authorization", &format!("Bearer {STAFF_TOKEN}"))
        .send(body)
        .expect("POST");
    let status = r.status().as_u16();
    let body = r.body_mut().read_to_vec().expect("body");
    parse(status, &body)
}

#[test]
fn staff_endpoints_need_the_token_even_on_loopback() {
    assert_error(&staff_get("/v1/staff/demand", None), 401, "Bearer");
    assert_error(
        &staff_get("/v1/staff/demand", Some("guess")),
        401,
        "does not match",
    );
    let (s, v) = staff_get("/v1/staff/demand", Some(STAFF_TOKEN));
    assert_eq!(s, 200, "{v}");
    assert!(v.is_array(), "{v}");
    let (s, _) = post(
        "/v1/staff/catalog",
        "text/csv",
        b"sku,name,price,stock,aisle\n",
    );
    assert_eq!(s, 401);
}

#[test]
fn staff_import_and_enrolment_show_in_the_next_answers() {
    let csv = b"sku,name,price,stock,aisle\nOAT-1,Oat Milk Barista Edition,2.79,9,milk\nOOS-1,Black Truffle Oil,19.99,0,oils\n";
    let (s, v) = staff_post("/v1/staff/catalog", "text/csv", csv);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["added"], 2, "{v}");
    let (_, v) = ask(json!({ "text": "how much is the oat milk barista edition?" }));
    assert!(v["answer"].as_str().unwrap_or("").contains("$2.79"), "{v}");
    // A file with a bad row changes nothing and says which line.
    let bad = b"sku,name,price,stock,aisle\nOAT-1,Oat Milk Barista Edition,1.00,9,milk\nBAD-1,Broken,-3,1,x\n";
    assert_error(
        &staff_post("/v1/staff/catalog", "text/csv", bad),
        422,
        "line 3",
    );
    let (_, v) = ask(json!({ "text": "how much is the oat milk barista edition?" }));
    assert!(v["answer"].as_str().unwrap_or("").contains("$2.79"), "{v}");

    // A reference photo of the model kit: the rocket is then known by its photo.
    let rocket = std::fs::read(crate::scan::photo("rocket.jpg")).expect("photo");
    let (s, v) = staff_post("/v1/staff/products/TOY-1/photos", "image/jpeg", &rocket);
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["added"].as_u64(), v["enrolled"].as_u64()),
        (Some(1), Some(1)),
        "{v}"
    );
    let (_, v) = post("/v1/scan", "image/jpeg", &rocket);
    assert_eq!(v["matches"][0]["sku"], "TOY-1", "{v}");
    assert!(
        v["matches"][0]["contributed"]
            .as_array()
            .is_some_and(|c| c.contains(&json!("photo"))),
        "{v}"
    );
    assert_error(
        &staff_post("/v1/staff/products/NOPE/photos", "image/jpeg", &rocket),
        422,
        "NOPE",
    );
}

#[test]
fn staff_calls_and_demand_reach_the_staff_feed() {
    // The feed, read as a staff tablet would.
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        let r = agent()
            .get(&format!("http://{}/v1/staff/events", server().addr))
            .header("Authorization", &format!("Bearer {STAFF_TOKEN}"))
            .config()
            .timeout_global(None)
            .build()
            .call()
            .expect("events");
        let mut reader = std::io::BufReader::new(r.into_body().into_reader());
        let mut line = String::new();
        while std::io::BufRead::read_line(&mut reader, &mut line).is_ok_and(|n| n > 0) {
            if tx.send(line.trim_end().to_string()).is_err() {
                return;
            }
            line.clear();
        }
    });
    std::thread::sleep(Duration::from_millis(300)); // subscribed
    let (_, v) = ask(json!({ "text": "can I talk to a member of staff?" }));
    assert_eq!(v["staff_requested"], true, "{v}");
    let (_, v) = ask(json!({ "text": "how much is the unicorn steak?" }));
    assert_eq!(v["products"], json!([]), "{v}");
    let mut seen = Vec::new();
    let t = Instant::now();
    while !seen.iter().any(|l: &String| l.contains("not-found"))
        && t.elapsed() < Duration::from_secs(30)
    {
        if let Ok(l) = rx.recv_timeout(Duration::from_secs(1)) {
            seen.push(l);
        }
    }
    let feed = seen.join("\n");
    assert!(feed.contains("event: staff-call"), "{feed}");
    assert!(feed.contains("\"kiosk\":\"test-kiosk\""), "{feed}");
    assert!(feed.contains("event: demand"), "{feed}");
    // Never the shopper's words.
    assert!(
        !feed.contains("unicorn") && !feed.contains("member of staff"),
        "{feed}"
    );
    // The webhook got the call too.
    let t = Instant::now();
    while HOOKED.lock().expect("hooked").is_empty() && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let hooked = HOOKED.lock().expect("hooked").clone();
    assert!(
        hooked
            .iter()
            .any(|b| b.contains("staff-call") && b.contains("test-kiosk")),
        "{hooked:?}"
    );

    // Out of stock is a demand signal too, by product.
    let csv = b"sku,name,price,stock,aisle\nSAF-1,Spanish Saffron Threads,12.99,0,spices\n";
    assert_eq!(staff_post("/v1/staff/catalog", "text/csv", csv).0, 200);
    let (_, v) = ask(json!({ "text": "do you have spanish saffron threads in stock?" }));
    assert_eq!(v["products"], json!(["SAF-1"]), "{v}");
    let (_, d) = staff_get("/v1/staff/demand", Some(STAFF_TOKEN));
    let rows = d.as_array().expect("rows");
    assert!(
        rows.iter()
            .any(|r| r["kind"] == "not-found" && r["count"].as_u64() >= Some(1)),
        "{d}"
    );
    assert!(
        rows.iter()
            .any(|r| r["kind"] == "out-of-stock" && r["sku"] == "SAF-1"),
        "{d}"
    );
    assert!(
        rows.iter()
            .all(|r| r["hour"].as_i64().is_some_and(|h| h % 3600 == 0)),
        "{d}"
    );
}

/// The `aisle serve` command itself: prints where it listens, answers, and on
/// SIGTERM finishes what is in flight and exits 0. A non-loopback bind is refused.
#[test]
fn aisle_serve_prints_its_address_and_drains_on_sigterm() {
    use std::io::BufRead;
    let config = server().dir.path().join("aisle.toml");
    let config = config.to_str().expect("utf-8");
    let out = crate::aisle(&["--config", config, "serve", "--bind", "0.0.0.0:0"]);
    crate::assert_fails_with(&out, "loopback");

    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_aisle"))
        .args([
            "--config",
            config,
            "--json",
            "serve",
            "--bind",
            "127.0.0.1:0",
        ])
        .env_remove("AISLE_DATA_DIR")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn aisle serve");
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("the address line");
    let v: Value = serde_json::from_str(&first).expect("json");
    assert_eq!(v["event"], "listening", "{v}");
    let addr: SocketAddr = v["address"]
        .as_str()
        .expect("address")
        .parse()
        .expect("addr");
    assert!(addr.ip().is_loopback() && addr.port() != 0, "{v}");
    let t = Instant::now();
    while get_at(addr, "/health").0 != 200 {
        assert!(t.elapsed() < Duration::from_secs(600), "never ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut r = agent()
        .post(&format!("http://{addr}/v1/ask"))
        .send(
            json!({ "text": "how much is the sparkling water?" })
                .to_string()
                .as_bytes(),
        )
        .expect("ask");
    let v: Value = r.body_mut().read_json().expect("json");
    assert!(v["answer"].as_str().unwrap_or("").contains("$0.99"), "{v}");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let out = child.wait_with_output().expect("wait");
    let stderr = crate::text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("stopped"), "{stderr}");
}

/// `/openapi.json` matches the running server: each documented operation, sent as a
/// client would without a body, gets a status the document names; every `$ref`
/// resolves; real answers carry exactly the properties their schemas list.
#[test]
fn openapi_describes_the_server_as_it_answers() {
    let (s, doc) = get("/openapi.json");
    assert_eq!(s, 200, "{doc}");
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().expect("paths");
    for route in [
        "/health",
        "/v1/ask",
        "/v1/scan",
        "/v1/overlay",
        "/v1/transcribe",
        "/v1/voice",
        "/v1/staff/events",
        "/v1/staff/catalog",
    ] {
        assert!(paths.contains_key(route), "{route} is not documented");
    }
    for (path, ops) in paths {
        let url = format!(
            "http://{}{}",
            server().addr,
            path.replace("{sku}", "NOPE")
                .replace("{id}", "no-such-session")
        );
        for (method, op) in ops.as_object().expect("operations") {
            let a = agent();
            let r = match method.as_str() {
                "get" if path.ends_with("/events") => {
                    // A stream: the status line is enough (no token: refused at once).
                    a.get(&url).call()
                }
                "get" => a.get(&url).call(),
                "post" => a.post(&url).send(&[][..]),
                "delete" => a.delete(&url).call(),
                m => panic!("undocumented method {m}"),
            };
            let status = r.expect("request").status().as_u16().to_string();
            let documented = op["responses"].as_object().expect("responses");
            assert!(
                documented.contains_key(&status),
                "{method} {path}: {status} is not in the document ({:?})",
                documented.keys().collect::<Vec<_>>()
            );
        }
    }
    // Every reference points into the document.
    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r.clone());
                }
                m.values().for_each(|x| refs(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for r in &all {
        let pointer = r.strip_prefix('#').unwrap_or(r);
        assert!(doc.pointer(pointer).is_some(), "dangling {r}");
    }
    // Real bodies carry the properties their schemas list, no more, no fewer.
    let props = |name: &str| -> Vec<String> {
        let mut v: Vec<String> = doc["components"]["schemas"][name]["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("no schema {name}"))
            .keys()
            .cloned()
            .collect();
        v.sort();
        v
    };
    let keys = |v: &Value| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().expect("object").keys().cloned().collect();
        k.sort();
        k
    };
    let (_, answer) = ask(json!({ "text": "how much is the sparkling water?" }));
    assert_eq!(keys(&answer), props("AnswerJson"), "{answer}");
    let photo = std::fs::read(crate::scan::photo("coffee.png")).expect("photo");
    let (_, scan) = post("/v1/scan", "image/png", &photo);
    assert_eq!(keys(&scan), props("ScanReport"), "{scan}");
    let (_, product) = get("/v1/products/WAT-1");
    assert_eq!(keys(&product), props("ProductInfo"), "{product}");
    let (_, err) = get("/v1/products/NOPE");
    assert_eq!(keys(&err), props("ErrorBody"), "{err}");
}

/// `aisle bench service` runs end to end (small counts, no peers): every workload is
/// served without an error, and the table's JSON has every row. Figures are the
/// benchmark's business, not this test's.
/// A config for a benchmark run in `dir`: its own data directory, the test
/// command's model store, `products` (CSV) as the catalog.
pub(crate) fn bench_config(dir: &std::path::Path, products: &str) -> std::path::PathBuf {
    std::fs::write(dir.join("products.csv"), products).expect("csv");
    let config = dir.join("aisle.toml");
    std::fs::write(
        &config,
        format!(
            "[paths]\ndata_dir = {:?}\nmodel_dir = {:?}\ncatalog = \"products.csv\"\n",
            dir.join("data"),
            crate::data_dir().join("models"),
        ),
    )
    .expect("config");
    config
}

#[test]
fn the_service_benchmark_runs_without_errors() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = bench_config(
        dir.path(),
        "sku,name,price,stock,aisle\nB1,Banana,0.25,90,fresh fruits\nY1,Greek Yogurt,1.29,20,yogurt\n\
R1,Basmati Rice,3.99,12,grains rice\nO1,Orange Juice,2.49,0,juice\nM1,Whole Milk,3.49,20,milk\n\
S1,Soy Sauce,2.19,8,asian foods\nC1,Sharp Cheddar,4.99,7,cheese\nW1,Sparkling Water,0.99,60,water\n",
    );
    let out = crate::aisle(&[
        "--config",
        &config.to_string_lossy(),
        "--json",
        "bench",
        "service",
        "--runs",
        "1",
        "--soak",
        "300",
        "--no-peer",
    ]);
    assert!(out.status.success(), "{}", crate::text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    let rows = v["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 9, "{v}");
    for r in rows {
        assert_eq!(r["aisle"]["errors"], 0, "{r}");
        assert!(r["aisle"]["requests"].as_u64() > Some(0), "{r}");
    }
    assert_eq!(v["soak"]["errors"], 0, "{v}");
    assert_eq!(v["voice"]["server"]["errors"], 0, "{v}");
    assert_eq!(v["voice"]["server"]["requests"], 3, "{v}");
    assert!(v["rss_mib"]["after_soak"].as_f64().is_some(), "{v}");
    assert!(v["rss_mib"]["soak_requests"].as_u64() >= Some(300), "{v}");
}

#[test]
fn the_tts_benchmark_runs_the_whole_loop() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = bench_config(
        dir.path(),
        "sku,name,price,stock,aisle\nB1,Banana,0.25,90,fresh fruits\nC1,Sharp Cheddar,4.99,7,cheese\n",
    );
    let out = crate::aisle(&[
        "--config",
        &config.to_string_lossy(),
        "--json",
        "bench",
        "tts",
        "--runs",
        "1",
        "--no-peer",
    ]);
    assert!(out.status.success(), "{}", crate::text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    for r in v["synthesis"].as_array().expect("rows") {
        assert!(r["aisle"]["rtf"].as_f64() < Some(1.0), "{r}");
        assert!(r["audio_s"].as_f64() > Some(1.0), "{r}");
    }
    let loops = v["loop"].as_array().expect("loop");
    assert_eq!(loops.len(), 2, "{v}");
    let grammar = &loops[0];
    assert!(
        grammar["answer"].as_str().unwrap_or("").contains("$0.25"),
        "{grammar}"
    );
    assert!(
        grammar["end_of_speech_to_first_audio_ms"]
            .as_f64()
            .is_some(),
        "{grammar}"
    );
}

/// `privacy.persist_images` / `persist_audio` keep raw inputs for debugging, and only
/// then: under `<data_dir>/debug/`, named by time.
#[test]
fn raw_inputs_are_kept_only_when_privacy_says_so() {
    use aisle_runtime::kiosk::{Kiosk, Parts};
    let dir = tempfile::tempdir().expect("tmp");
    let csv = dir.path().join("products.csv");
    std::fs::write(&csv, crate::scan::CATALOG).expect("csv");
    let photo = std::fs::read(crate::scan::photo("coffee.png")).expect("photo");
    for keep in [false, true] {
        let data = dir.path().join(format!("data-{keep}"));
        let config = dir.path().join(format!("{keep}.toml"));
        std::fs::write(
            &config,
            format!(
                "[paths]\ndata_dir = {data:?}\nmodel_dir = {:?}\ncatalog = \"products.csv\"\n\n[privacy]\npersist_images = {keep}\n",
                crate::data_dir().join("models"),
            ),
        )
        .expect("config");
        let cfg = aisle_firmware_config::load(Some(&config), &Default::default()).expect("config");
        let kiosk = Kiosk::load(&cfg, Parts::none()).expect("kiosk");
        let img = kiosk.decode_image(&photo, "test photo").expect("decode");
        assert!(img.width() > 0 && img.height() > 0);
        let kept: Vec<_> = std::fs::read_dir(data.join("debug/images"))
            .map(|d| d.filter_map(Result::ok).collect())
            .unwrap_or_default();
        if keep {
            assert_eq!(kept.len(), 1, "{kept:?}");
            let bytes = std::fs::read(kept[0].path()).expect("read");
            assert_eq!(bytes, photo, "the input exactly as sent");
        } else {
            assert!(kept.is_empty(), "{kept:?}");
            assert!(!data.join("debug").exists());
        }
    }
}

/// What the shopper said reaches the log only as its length, unless
/// `privacy.redact_transcripts_in_logs = false` says otherwise.
#[test]
fn transcripts_are_redacted_in_logs_unless_privacy_says_otherwise() {
    use aisle_runtime::kiosk::{Kiosk, Parts};
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("log").extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join("products.csv"), crate::scan::CATALOG).expect("csv");
    for redact in [true, false] {
        let config = dir.path().join(format!("{redact}.toml"));
        std::fs::write(
            &config,
            format!(
                "[paths]\ndata_dir = {:?}\nmodel_dir = {:?}\ncatalog = \"products.csv\"\n\n[privacy]\nredact_transcripts_in_logs = {redact}\n",
                dir.path().join(format!("data-{redact}")),
                crate::data_dir().join("models"),
            ),
        )
        .expect("config");
        let cfg = aisle_firmware_config::load(Some(&config), &Default::default()).expect("config");
        let kiosk = Kiosk::load(&cfg, Parts::none()).expect("kiosk");
        let buf = Buf::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            kiosk.log_transcript("heard", "where is the oat milk");
        });
        let log = String::from_utf8(buf.0.lock().expect("log").clone()).expect("utf-8");
        assert!(log.contains("heard"), "{log}");
        assert_eq!(log.contains("oat milk"), !redact, "{log}");
        if redact {
            assert!(log.contains("chars=21"), "{log}");
        }
    }
}

/// `inference.threads` is what the vision models and index builds run on.
#[test]
fn inference_threads_reach_the_models() {
    let store = aisle_models::Store::open(&crate::data_dir().join("models")).expect("store");
    let cfg = crate::scan::config("[inference]\nthreads = 1\nocr = false\n");
    let m = aisle_runtime::kiosk::vision_models(&cfg, &store, None).expect("vision models");
    assert_eq!(m.threads, 1);
}

/// A screen's camera stream: cards laid out in the display size asked for (the text
/// floor holds there), steady across the stream's frames; bad ids and sizes are
/// refused; a stream ends when asked.
#[test]
fn camera_streams_keep_cards_steady_in_the_display_space() {
    let frame = server().dir.path().join("camera-shelf.png");
    crate::ar::shelf(&frame); // 1280x720
    let frame = std::fs::read(&frame).expect("frame");
    let id = "0f7c2c7e-screen-test";
    let mut cards_per_frame = Vec::new();
    for i in 0..3 {
        let (s, v) = post(&format!("/v1/camera/{id}?w=640&h=360"), "image/png", &frame);
        assert_eq!(s, 200, "{v}");
        assert_eq!(
            (v["frame_width"].as_u64(), v["frame_height"].as_u64()),
            (Some(1280), Some(720))
        );
        assert_eq!(
            (
                v["overlay"]["width"].as_f64(),
                v["overlay"]["height"].as_f64()
            ),
            (Some(640.0), Some(360.0))
        );
        if i == 0 {
            assert_eq!(v["pass"], "identified", "{v}");
        }
        let mut cards: Vec<(String, [f64; 4])> = v["overlay"]["cards"]
            .as_array()
            .expect("cards")
            .iter()
            .map(|c| {
                let r = &c["product"];
                let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
                for l in c["lines"].as_array().expect("lines") {
                    assert!(l["px"].as_f64() >= Some(20.0), "kiosk text floor: {l}");
                }
                let card = &c["rect"];
                let inside = card["x"].as_f64() >= Some(0.0)
                    && card["y"].as_f64() >= Some(0.0)
                    && card["x"].as_f64().unwrap_or(0.0) + card["w"].as_f64().unwrap_or(0.0)
                        <= 640.5
                    && card["y"].as_f64().unwrap_or(0.0) + card["h"].as_f64().unwrap_or(0.0)
                        <= 360.5;
                assert!(inside, "the card is inside the display: {card}");
                (
                    c["sku"].as_str().unwrap_or("").to_string(),
                    [f("x"), f("y"), f("w"), f("h")],
                )
            })
            .collect();
        cards.sort_by(|a, b| a.0.cmp(&b.0));
        cards_per_frame.push(cards);
    }
    let skus: Vec<&str> = cards_per_frame[0].iter().map(|c| c.0.as_str()).collect();
    assert_eq!(skus, ["CAT-1", "COF-1"], "{cards_per_frame:?}");
    // The cup is on the left half of the frame: its box, scaled by a half, too.
    assert!(cards_per_frame[0][1].1[0] < 320.0, "{cards_per_frame:?}");
    // The same still frame three times: the cards do not move.
    for later in &cards_per_frame[1..] {
        assert_eq!(later.len(), 2, "{cards_per_frame:?}");
        for (a, b) in cards_per_frame[0].iter().zip(later) {
            assert_eq!(a.0, b.0);
            for k in 0..4 {
                assert!((a.1[k] - b.1[k]).abs() < 2.0, "{cards_per_frame:?}");
            }
        }
    }
    let metrics = String::from_utf8(
        agent()
            .get(&format!("http://{}/metrics", server().addr))
            .call()
            .expect("metrics")
            .body_mut()
            .read_to_vec()
            .expect("body"),
    )
    .expect("text");
    assert!(metrics.contains("aisle_camera_streams"), "{metrics}");

    assert_error(
        &post("/v1/camera/short", "image/png", &frame),
        400,
        "stream id",
    );
    assert_error(
        &post("/v1/camera/has%20a%20space1", "image/png", &frame),
        400,
        "stream id",
    );
    // One side alone: the other follows the frame's shape (16:9).
    let (s, v) = post(&format!("/v1/camera/{id}?w=640"), "image/png", &frame);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["overlay"]["height"].as_f64(), Some(360.0), "{v}");
    assert_error(
        &post(&format!("/v1/camera/{id}?w=0&h=10"), "image/png", &frame),
        400,
        "w must be between 1 and 16384",
    );
    assert_error(
        &post(&format!("/v1/camera/{id}?h=NaN"), "image/png", &frame),
        400,
        "h must be",
    );
    assert_error(
        &post(&format!("/v1/camera/{id}"), "image/png", b"not an image"),
        422,
        "camera frame",
    );

    let url = format!("http://{}/v1/camera/{id}", server().addr);
    assert_eq!(
        agent()
            .delete(&url)
            .call()
            .expect("DELETE")
            .status()
            .as_u16(),
        204
    );
    assert_eq!(
        agent()
            .delete(&url)
            .call()
            .expect("DELETE")
            .status()
            .as_u16(),
        404
    );
    assert_alive();
}

/// The screen's "Call staff" button: staff hear of it; a bad body is refused.
#[test]
fn the_call_staff_button_reaches_the_staff() {
    let before = HOOKED.lock().expect("hooked").len();
    let (s, v) = post("/v1/call-staff", "application/json", b"");
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["called"], true, "{v}");
    let t = Instant::now();
    while HOOKED.lock().expect("hooked").len() <= before && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let hooked = HOOKED.lock().expect("hooked").clone();
    assert!(
        hooked[before..]
            .iter()
            .any(|b| b.contains("staff-call") && b.contains("test-kiosk")),
        "{hooked:?}"
    );
    let (_, a) = ask(json!({ "text": "how much is the whole milk?" }));
    let id = a["session"].as_str().expect("session");
    let (s, v) = post(
        "/v1/call-staff",
        "application/json",
        json!({ "session": id }).to_string().as_bytes(),
    );
    assert_eq!(s, 200, "{v}");
    assert_error(
        &post("/v1/call-staff", "application/json", b"{\"who\": 1}"),
        400,
        "who",
    );
}

/// The page and its assets: embedded, typed, under a policy that lets it reach only
/// this service; every asset the page names is served.
#[test]
fn the_kiosk_page_is_served_with_its_assets() {
    let r = agent()
        .get(&format!("http://{}/", server().addr))
        .call()
        .expect("GET /");
    assert_eq!(r.status().as_u16(), 200);
    let h = |k: &str| {
        r.headers()
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    assert!(h("content-type").starts_with("text/html"));
    let csp = h("content-security-policy");
    assert!(
        csp.contains("default-src 'self'") && csp.contains("connect-src 'self'"),
        "{csp}"
    );
    let mut r = r;
    let html = r.body_mut().read_to_string().expect("html");
    for testid in [
        "ask-input",
        "ask-submit",
        "mic-button",
        "transcript",
        "answer",
        "call-staff",
        "start-over",
        "consent-accept",
    ] {
        assert!(
            html.contains(&format!("data-testid=\"{testid}\"")),
            "{testid}"
        );
    }
    let mut total = html.len();
    for (path, ty) in [
        ("/ui/app.js", "text/javascript"),
        ("/ui/app.css", "text/css"),
        ("/ui/pcm-worklet.js", "text/javascript"),
    ] {
        let mut r = agent()
            .get(&format!("http://{}{path}", server().addr))
            .call()
            .expect("asset");
        assert_eq!(r.status().as_u16(), 200, "{path}");
        let ct = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        assert!(ct.starts_with(ty), "{path}: {ct}");
        total += r.body_mut().read_to_vec().expect("body").len();
    }
    // No address outside this service in the page or its scripts.
    let js = agent()
        .get(&format!("http://{}/ui/app.js", server().addr))
        .call()
        .expect("js")
        .body_mut()
        .read_to_string()
        .expect("js");
    for page in [&html, &js] {
        assert!(
            !page.contains("http://") && !page.contains("https://"),
            "an outside address"
        );
    }
    eprintln!("kiosk page: {total} bytes of HTML, JS and CSS");
    assert_error(&get("/ui/nope.js"), 404, "no such endpoint");
    // A method an endpoint does not take: the same error shape.
    let mut r = agent()
        .delete(&format!("http://{}/health", server().addr))
        .call()
        .expect("DELETE");
    let status = r.status().as_u16();
    let body = r.body_mut().read_to_vec().expect("body");
    assert_error(&parse(status, &body), 405, "does not take DELETE");
}

/// One voice run over the WebSocket: `start` (as given), the spoken question in
/// 20 ms frames at real-time pace, `end`. With `barge_in` a `cancel` goes as soon as
/// `tts-start` arrives. Returns the JSON events and the binary frames received.
fn voice_run(start: Value, question: &str, barge_in: bool) -> (Vec<Value>, Vec<Vec<u8>>) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let wav = server()
        .dir
        .path()
        .join(format!("q-{}.wav", question.len()));
    crate::speak(question, &wav);
    let audio = aisle_speech::decode_wav(&wav).expect("decode");
    let pcm: Vec<u8> = audio
        .samples
        .iter()
        .chain(std::iter::repeat_n(&0.0f32, 16_000))
        .flat_map(|s| ((s * 32767.0) as i16).to_le_bytes())
        .collect();
    let url = format!("ws://{}/v1/voice", server().addr);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let (ws, _) = tokio_tungstenite::connect_async(&url)
            .await
            .expect("connect");
        let (mut tx, mut rx) = ws.split();
        tx.send(Message::Text(start.to_string().into()))
            .await
            .expect("start");
        let (cancel_tx, mut cancel_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let sender = tokio::spawn(async move {
            let mut chunks = pcm.chunks(640);
            loop {
                tokio::select! {
                    _ = cancel_rx.recv() => {
                        let _ = tx.send(Message::Text(r#"{"type":"cancel"}"#.into())).await;
                        // Keep the sink open until the run ends.
                        tokio::time::sleep(Duration::from_secs(60)).await;
                        return;
                    }
                    _ = tokio::time::sleep(Duration::from_millis(20)) => {
                        match chunks.next() {
                            Some(c) => {
                                let _ = tx.send(Message::Binary(c.to_vec().into())).await;
                            }
                            None => {
                                let _ = tx.send(Message::Text(r#"{"type":"end"}"#.into())).await;
                                chunks = [].chunks(1);
                            }
                        }
                    }
                }
            }
        });
        let mut events = Vec::new();
        let mut frames = Vec::new();
        while let Some(Ok(m)) = rx.next().await {
            match m {
                Message::Text(t) => {
                    let v: Value = serde_json::from_str(t.as_str()).expect("json");
                    if v["type"] == "tts-start" && barge_in {
                        let _ = cancel_tx.send(());
                    }
                    let end = v["type"] == "run-end";
                    events.push(v);
                    if end {
                        break;
                    }
                }
                Message::Binary(b) => frames.push(b.to_vec()),
                _ => {}
            }
        }
        sender.abort();
        (events, frames)
    })
}

/// 16-bit mono PCM frames as a WAV, heard by the service's own whisper.
fn hear(frames: &[Vec<u8>], rate: u32) -> String {
    let pcm: Vec<f32> = frames
        .concat()
        .chunks_exact(2)
        .map(|c| f32::from(i16::from_le_bytes([c[0], c[1]])) / 32768.0)
        .collect();
    let wav = aisle_speech::tts::wav_bytes(&pcm, rate);
    let (status, v) = post("/v1/transcribe", "audio/wav", &wav);
    assert_eq!(status, 200, "{v}");
    v["text"].as_str().unwrap_or("").to_lowercase()
}

#[test]
fn a_spoken_question_gets_a_spoken_answer_and_barge_in_stops_it() {
    let question = "how much is the banana and where can I find it";
    let (events, frames) = voice_run(
        json!({ "type": "start", "sample_rate": 16000, "speak": true }),
        question,
        false,
    );
    let types: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    let pos = |t: &str| {
        types
            .iter()
            .position(|x| *x == t)
            .unwrap_or_else(|| panic!("no {t} in {types:?}"))
    };
    assert!(pos("intent-end") < pos("tts-start"), "{types:?}");
    assert!(pos("tts-start") < pos("tts-end"), "{types:?}");
    assert!(pos("tts-end") < pos("run-end"), "{types:?}");
    let answer = events[pos("intent-end")]["answer"]["answer"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(answer.contains("$0.69"), "{answer}");
    let start = &events[pos("tts-start")];
    assert_eq!(start["format"], "s16le", "{start}");
    let rate = start["sample_rate"].as_u64().expect("rate") as u32;
    assert_eq!(rate, 22_050);
    let end = &events[pos("tts-end")];
    assert_eq!(end["interrupted"], false, "{end}");
    let sentences = end["sentences"].as_u64().expect("sentences") as usize;
    assert!(sentences >= 2, "{end} for {answer:?}");
    assert_eq!(frames.len(), sentences, "one binary frame per sentence");
    // What the kiosk said is what it wrote: its own whisper hears the price.
    let heard = hear(&frames, rate);
    assert!(
        heard.contains("banana") && heard.contains("69"),
        "{heard:?} for {answer:?}"
    );
    let t = &events[pos("run-end")]["timings_ms"];
    assert!(t["tts_first_audio"].as_f64().is_some(), "{t}");
    assert!(t["end_of_speech_to_first_audio"].as_f64().is_some(), "{t}");

    // Barge-in: `cancel` as the answer starts to speak stops it.
    let (events, cut) = voice_run(
        json!({ "type": "start", "sample_rate": 16000, "speak": true }),
        question,
        true,
    );
    let end = events
        .iter()
        .find(|e| e["type"] == "tts-end")
        .unwrap_or_else(|| panic!("no tts-end in {events:?}"));
    assert_eq!(end["interrupted"], true, "{end}");
    assert!(
        cut.len() < sentences,
        "{} of {sentences} sentences sent",
        cut.len()
    );
    let run_end = events.last().expect("run-end");
    assert_eq!(run_end["cancelled"], true, "{run_end}");

    // Without `speak` no audio comes back.
    let (events, frames) = voice_run(
        json!({ "type": "start", "sample_rate": 16000 }),
        question,
        false,
    );
    assert!(frames.is_empty());
    assert!(!events.iter().any(|e| e["type"] == "tts-start"));
    assert_alive();
}

#[test]
fn say_returns_the_answer_spoken_as_a_wav() {
    let (status, wav, ctype) = post_raw(
        "/v1/say",
        "application/json",
        json!({ "text": "Banana is $0.69, in Aisle 3." })
            .to_string()
            .as_bytes(),
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&wav));
    assert_eq!(ctype, "audio/wav");
    let audio = aisle_speech::decode_wav_bytes(&wav, std::path::Path::new("say")).expect("a WAV");
    assert!(audio.duration_s() > 1.0, "{} s", audio.duration_s());
    let (status, v) = post("/v1/transcribe", "audio/wav", &wav);
    assert_eq!(status, 200, "{v}");
    let heard = v["text"].as_str().unwrap_or("").to_lowercase();
    assert!(
        heard.contains("banana") && heard.contains("69"),
        "{heard:?}"
    );
    // Bad requests: named, and the service keeps answering.
    for (body, status, needle) in [
        (json!({ "text": "" }), 422, "nothing to say"),
        (json!({ "text": "🙂🙂" }), 422, "nothing to say"),
        (json!({ "text": "x ".repeat(2_500) }), 422, "at most 4000"),
        (json!({ "words": "hi" }), 400, "unknown field"),
    ] {
        let got = post("/v1/say", "application/json", body.to_string().as_bytes());
        assert_error(&got, status, needle);
    }
    assert_alive();
}

/// Benchmarks work on their own data: `aisle bench assistant` builds the 49,689-product
/// demo store under `<data>/bench/`, and the store's own catalog keeps its products.
#[test]
fn benchmarks_never_touch_the_stores_own_catalog() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = bench_config(
        dir.path(),
        "sku,name,price,stock,aisle\nB1,Banana,0.25,90,fresh fruits\nC1,Sharp Cheddar,4.99,7,cheese\n",
    );
    let c = config.to_string_lossy();
    let out = crate::aisle(&["--config", &c, "ask", "how much is the banana"]);
    assert!(out.status.success(), "{}", crate::text(&out.stderr));
    let out = crate::aisle(&[
        "--config",
        &c,
        "bench",
        "assistant",
        "--runs",
        "1",
        "--no-peer",
    ]);
    assert!(out.status.success(), "{}", crate::text(&out.stderr));
    let own =
        aisle_runtime::catalog::CatalogDb::open(&dir.path().join("data/catalog/store.sqlite"))
            .expect("the store's catalog");
    assert_eq!(own.product_count().expect("count"), 2);
    let bench = aisle_runtime::catalog::CatalogDb::open(
        &dir.path().join("data/bench/catalog/store.sqlite"),
    )
    .expect("the bench's catalog");
    assert!(bench.product_count().expect("count") > 49_000);
}
