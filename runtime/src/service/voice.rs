//! `GET /v1/voice`: one spoken question per run over a WebSocket, after Home
//! Assistant Assist's pipeline runs.
//!
//! Client: optionally a binary frame with a photo of the product (before `start`),
//! then `{"type":"start","sample_rate":16000,"session":"...","sku":"..."}`, binary
//! frames of 16-bit little-endian mono PCM, and `{"type":"end"}` (or the VAD ends the
//! utterance first); `{"type":"cancel"}` stops a run. Server: JSON text frames with a
//! `type`: `run-start`, `vad-start`, `stt-partial` (`text`), `vad-end`, `stt-end`
//! (`text`), `intent-end` (`answer`: the `/v1/ask` object), `run-end` (`timings_ms`),
//! or `error` (`code`, `message`). With `"speak": true` in `start` the answer is also
//! spoken: `tts-start` (`sample_rate`, `format`: `s16le`, mono), one binary frame of
//! 16-bit PCM per sentence as soon as it is synthesised, then `tts-end`
//! (`interrupted`); a `cancel` while it speaks stops it (barge-in) and the run ends.
//! Frames that make no sense get an `error` and the
//! connection stays open for the next run. Between runs, audio frames (late ones of a
//! run the VAD ended) and `end`/`cancel` are ignored; a binary frame is taken as the
//! next run's photo only when it is a JPEG, PNG or WebP.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use aisle_speech::wire::{ClientMsg, looks_like_image, parse_client, pcm16_frame};
use aisle_speech::{AudioSource, ListenConfig, ListenEvent};
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{REQUEST_TIME_LIMIT, Service};
use crate::kiosk::{AskRequest, Kiosk};

/// Longest spoken question (16 kHz samples it may send): 30 s.
const MAX_RUN_SAMPLES: usize = 30 * 48_000;

pub async fn upgrade(
    State(s): State<Arc<Service>>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let k = match s.ready() {
        Ok(k) => k,
        Err(e) => return e.into_response(),
    };
    let ws = match ws {
        Ok(ws) => ws,
        Err(e) => {
            return super::ApiError::new(
                e.status(),
                "not_websocket",
                format!("/v1/voice is a WebSocket: {e}"),
            )
            .into_response();
        }
    };
    ws.max_message_size(super::MAX_IMAGE_BYTES)
        .on_upgrade(move |socket| session(socket, s, k))
}

fn error(code: &str, message: impl Into<String>) -> Value {
    json!({ "type": "error", "code": code, "message": message.into() })
}

/// What the blocking half of a run hands the socket: events, and speech.
enum Out {
    Json(Value),
    Audio(Vec<u8>),
}

async fn send_out(socket: &mut WebSocket, out: Out) -> bool {
    match out {
        Out::Json(v) => send(socket, v).await,
        Out::Audio(pcm) => socket.send(Message::Binary(pcm.into())).await.is_ok(),
    }
}

async fn send(socket: &mut WebSocket, v: Value) -> bool {
    socket
        .send(Message::Text(v.to_string().into()))
        .await
        .is_ok()
}

/// One connection: runs one after another.
async fn session(mut socket: WebSocket, s: Arc<Service>, k: Arc<Kiosk>) {
    let mut photo: Option<Vec<u8>> = None;
    while let Some(msg) = socket.recv().await {
        let Ok(msg) = msg else { return };
        match msg {
            // A photo for the next run; anything else between runs is audio the
            // client sent before it heard that the VAD ended the last one.
            Message::Binary(b) if looks_like_image(&b) => photo = Some(b.to_vec()),
            Message::Binary(_) => {}
            Message::Text(t) => {
                match parse_client(t.as_str()) {
                    Ok(ClientMsg::Start {
                        sample_rate,
                        session,
                        sku,
                        speak,
                    }) => {
                        if !(8_000..=48_000).contains(&sample_rate) {
                            if !send(
                                &mut socket,
                                error(
                                    "bad_request",
                                    format!(
                                        "sample_rate {sample_rate} is not between 8000 and 48000"
                                    ),
                                ),
                            )
                            .await
                            {
                                return;
                            }
                            continue;
                        }
                        let start = Start {
                            sample_rate,
                            session,
                            sku,
                            speak,
                            photo: photo.take(),
                        };
                        if !run(&mut socket, &s, &k, start).await {
                            return;
                        }
                    }
                    // `end` or `cancel` after the run ended by itself (the client
                    // cannot know it had): nothing to do.
                    Ok(ClientMsg::End | ClientMsg::Cancel) => {}
                    Err(m) => {
                        if !send(&mut socket, error("bad_request", m)).await {
                            return;
                        }
                    }
                }
            }
            Message::Close(_) => return,
            _ => {}
        }
    }
}

/// JPEG, PNG or WebP by their first bytes.
struct Start {
    sample_rate: u32,
    session: Option<String>,
    sku: Option<String>,
    speak: bool,
    photo: Option<Vec<u8>>,
}

/// Audio handed over from the socket, read by the transcriber's listen loop.
struct ChannelSource {
    rx: mpsc::Receiver<Vec<f32>>,
    rate: u32,
}

impl AudioSource for ChannelSource {
    fn sample_rate(&self) -> u32 {
        self.rate
    }
    fn channels(&self) -> u16 {
        1
    }
    fn describe(&self) -> String {
        format!("voice run {} Hz x1", self.rate)
    }
    fn read(&mut self, out: &mut Vec<f32>, wait: Duration) -> aisle_speech::Result<bool> {
        match self.rx.recv_timeout(wait) {
            Ok(chunk) => out.extend(chunk),
            Err(mpsc::RecvTimeoutError::Timeout) => return Ok(true),
            Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(false),
        }
        while let Ok(chunk) = self.rx.try_recv() {
            out.extend(chunk);
        }
        Ok(true)
    }
}

/// One run; false when the connection is gone.
async fn run(socket: &mut WebSocket, s: &Arc<Service>, k: &Arc<Kiosk>, start: Start) -> bool {
    let t0 = Instant::now();
    let permit = match s.queues.speech.acquire(REQUEST_TIME_LIMIT).await {
        Ok(p) => p,
        Err(e) => {
            let e = super::ApiError::from(e);
            return send(socket, error(e.code, e.message)).await;
        }
    };
    // "How much is this": the product in the photo sent before the run, else the sku.
    let mut sku = start.sku;
    if let Some(bytes) = start.photo {
        let kk = k.clone();
        let scanned =
            tokio::task::spawn_blocking(move || kk.scan_bytes(&bytes, "voice photo", 3)).await;
        match scanned {
            Ok(Ok(r)) if r.decision == aisle_vision::Decision::Identified => {
                sku = r.matches.first().map(|m| m.sku.clone());
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return send(socket, error("bad_photo", format!("{e}"))).await,
            Err(_) => {
                return send(socket, error("internal", "the photo could not be scanned")).await;
            }
        }
    }
    if !send(
        socket,
        json!({ "type": "run-start", "sample_rate": start.sample_rate }),
    )
    .await
    {
        return false;
    }
    let (audio_tx, audio_rx) = mpsc::channel::<Vec<f32>>();
    let (ev_tx, mut ev_rx) = tokio::sync::mpsc::unbounded_channel::<Out>();
    let stop = Arc::new(AtomicBool::new(false));
    // Barge-in: stops the spoken answer (`stop` already ends listening at the answer).
    let hush = Arc::new(AtomicBool::new(false));
    let task = {
        let (k, stop, hush, session) =
            (k.clone(), stop.clone(), hush.clone(), start.session.clone());
        let (rate, speak) = (start.sample_rate, start.speak);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let run = Run {
                rate,
                stop: &stop,
                hush: &hush,
                session,
                sku,
                speak,
            };
            listen_and_answer(&k, run, audio_rx, &ev_tx)
        })
    };
    let mut audio_tx = Some(audio_tx);
    let mut samples = 0usize;
    let mut task = std::pin::pin!(task);
    let mut cancelled = false;
    let timings = loop {
        tokio::select! {
            ev = ev_rx.recv() => {
                if let Some(v) = ev
                    && !send_out(socket, v).await
                {
                    stop.store(true, Ordering::Relaxed);
                    hush.store(true, Ordering::Relaxed);
                    return false;
                }
            }
            done = &mut task => {
                // Events sent before the task ended go out first.
                while let Ok(v) = ev_rx.try_recv() {
                    if !send_out(socket, v).await {
                        return false;
                    }
                }
                break match done {
                    Ok(t) => t,
                    Err(_) => {
                        let _ = send(socket, error("internal", "the voice run failed inside the kiosk")).await;
                        json!({})
                    }
                };
            }
            msg = socket.recv() => {
                let Some(Ok(msg)) = msg else {
                    stop.store(true, Ordering::Relaxed);
                    hush.store(true, Ordering::Relaxed);
                    return false;
                };
                match msg {
                    Message::Binary(b) => {
                        let chunk = match pcm16_frame(&b) {
                            Ok(c) => c,
                            Err(e) => {
                                let _ = send(socket, error("bad_audio", e)).await;
                                continue;
                            }
                        };
                        samples += chunk.len();
                        if samples > MAX_RUN_SAMPLES {
                            audio_tx = None;
                            continue;
                        }
                        if let Some(tx) = &audio_tx {
                            let _ = tx.send(chunk);
                        }
                    }
                    Message::Text(t) => match parse_client(t.as_str()) {
                        Ok(ClientMsg::End) => audio_tx = None,
                        Ok(ClientMsg::Cancel) => {
                            cancelled = true;
                            stop.store(true, Ordering::Relaxed);
                            hush.store(true, Ordering::Relaxed);
                            audio_tx = None;
                        }
                        Ok(ClientMsg::Start { .. }) => {
                            let _ = send(socket, error("bad_request", "a run is open: send {\"type\":\"end\"} or {\"type\":\"cancel\"} first")).await;
                        }
                        Err(m) => {
                            let _ = send(socket, error("bad_request", m)).await;
                        }
                    },
                    Message::Close(_) => {
                        stop.store(true, Ordering::Relaxed);
                        hush.store(true, Ordering::Relaxed);
                        return false;
                    }
                    _ => {}
                }
            }
        }
    };
    let mut t = timings;
    t["run"] = json!(t0.elapsed().as_secs_f64() * 1000.0);
    send(
        socket,
        json!({ "type": "run-end", "cancelled": cancelled, "timings_ms": t }),
    )
    .await
}

/// What one run was asked for.
struct Run<'a> {
    rate: u32,
    stop: &'a AtomicBool,
    hush: &'a AtomicBool,
    session: Option<String>,
    sku: Option<String>,
    speak: bool,
}

/// The blocking half of a run: VAD and whisper over the audio as it arrives, then
/// the answer, then (when asked) the answer spoken. Returns the timings.
fn listen_and_answer(
    k: &Kiosk,
    run: Run<'_>,
    rx: mpsc::Receiver<Vec<f32>>,
    ev: &tokio::sync::mpsc::UnboundedSender<Out>,
) -> Value {
    let Run {
        rate,
        stop,
        hush,
        session,
        sku,
        speak,
    } = run;
    let tr = match k.transcriber() {
        Ok(t) => t,
        Err(e) => {
            let _ = ev.send(Out::Json(error("not_loaded", format!("{e}"))));
            return json!({});
        }
    };
    let mut source = ChannelSource { rx, rate };
    let mut heard: Option<aisle_speech::Utterance> = None;
    let mut on_event = |e: ListenEvent| match e {
        ListenEvent::SpeechStart { at_ms } => {
            let _ = ev.send(Out::Json(json!({ "type": "vad-start", "at_ms": at_ms })));
        }
        ListenEvent::Partial { at_ms, text } => {
            let _ = ev.send(Out::Json(
                json!({ "type": "stt-partial", "at_ms": at_ms, "text": text }),
            ));
        }
        ListenEvent::Final(u) => {
            if heard.is_none() && !u.text.trim().is_empty() {
                let _ = ev.send(Out::Json(json!({ "type": "vad-end", "at_ms": u.end_ms })));
                heard = Some(u);
                stop.store(true, Ordering::Relaxed);
            }
        }
    };
    let cfg = ListenConfig::default();
    if let Err(e) = tr.listen(&mut source, &cfg, stop, &mut on_event) {
        let _ = ev.send(Out::Json(error("stt_failed", format!("{e}"))));
        return json!({});
    }
    let Some(u) = heard else {
        if stop.load(Ordering::Relaxed) {
            return json!({}); // cancelled, or the client went away
        }
        let _ = ev.send(Out::Json(json!({ "type": "stt-end", "text": "" })));
        let _ = ev.send(Out::Json(error("no_speech", "no speech was heard")));
        return json!({});
    };
    k.log_transcript("voice run heard", &u.text);
    let _ = ev.send(Out::Json(json!({ "type": "stt-end", "text": u.text })));
    let t = Instant::now();
    let asked = k.ask(&AskRequest {
        text: &u.text,
        session: session.as_deref(),
        sku: sku.as_deref(),
        image: None,
    });
    let answer_ms = t.elapsed().as_secs_f64() * 1000.0;
    let mut timings = json!({
        "end_of_speech_to_text": u.endpoint_latency_ms,
        "decode": u.decode_ms,
        "answer": answer_ms,
        "end_of_speech_to_answer": u.endpoint_latency_ms as f64 + answer_ms,
    });
    match asked {
        Ok(mut a) => {
            a.transcript = Some(u.text.clone());
            let _ = ev.send(Out::Json(
                json!({ "type": "intent-end", "answer": a.to_json() }),
            ));
            if speak && !hush.load(Ordering::Relaxed) {
                if let Some(first) = speak_answer(k, &a.answer.text, hush, ev) {
                    timings["tts_first_audio"] = json!(first);
                    timings["end_of_speech_to_first_audio"] =
                        json!(u.endpoint_latency_ms as f64 + answer_ms + first);
                }
            }
        }
        Err(e) => {
            let _ = ev.send(Out::Json(error("intent_failed", format!("{e}"))));
        }
    }
    timings
}

/// Sends the answer spoken, a sentence per binary frame as each is made, until done
/// or hushed. Returns the milliseconds to the first frame.
fn speak_answer(
    k: &Kiosk,
    text: &str,
    hush: &AtomicBool,
    ev: &tokio::sync::mpsc::UnboundedSender<Out>,
) -> Option<f64> {
    let voice = match k.voice() {
        Ok(v) => v,
        Err(e) => {
            let _ = ev.send(Out::Json(error("not_loaded", format!("{e}"))));
            return None;
        }
    };
    let t = Instant::now();
    let _ = ev.send(Out::Json(json!({
        "type": "tts-start",
        "sample_rate": voice.sample_rate(),
        "format": "s16le",
        "channels": 1,
    })));
    let mut first = None;
    let mut sent = 0usize;
    let spoken = voice.stream(text, |s| {
        if hush.load(Ordering::Relaxed) {
            return false;
        }
        if !s.samples.is_empty() {
            first.get_or_insert(t.elapsed().as_secs_f64() * 1000.0);
            let _ = ev.send(Out::Audio(aisle_speech::tts::pcm16(&s.samples)));
            sent += 1;
        }
        !hush.load(Ordering::Relaxed)
    });
    if let Err(e) = spoken {
        let _ = ev.send(Out::Json(error("tts_failed", format!("{e}"))));
    }
    let _ = ev.send(Out::Json(json!({
        "type": "tts-end",
        "sentences": sent,
        "interrupted": hush.load(Ordering::Relaxed),
    })));
    first
}
