//! `GET /openapi.json`: the API described (OpenAPI 3.1). Bodies' schemas are
//! generated from the Rust types the handlers serialise (schemars), so they cannot
//! drift from what is sent; the operations are listed here beside the router, and a
//! test sends each documented operation to the running server and checks that the
//! status it gets is one this document names.

use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use super::camera::CameraFrame;
use super::{AskBody, CallStaffBody, ErrorBody, SayBody};
use crate::catalog::ImportReport;
use crate::kiosk::{AnswerJson, DemandCount, ProductInfo, SearchHit, TranscriptJson};
use crate::scan::ScanReport;

/// A body: media type and schema.
type Content = Option<(&'static str, Value)>;
/// A response: status, description, body.
type Resp = (u16, &'static str, Content);

/// One operation: method, path, summary, request body (media type, schema),
/// responses (status, description, media type, schema).
struct Op {
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    staff: bool,
    request: Content,
    responses: Vec<Resp>,
    parameters: Vec<Value>,
}

fn path_param(name: &str, what: &str) -> Value {
    json!({ "name": name, "in": "path", "required": true, "description": what, "schema": { "type": "string" } })
}

/// An optional integer query parameter within `min..=max`.
fn ranged(name: &str, what: &str, min: u32, max: u32) -> Value {
    json!({ "name": name, "in": "query", "required": false, "description": format!("{what} ({min}-{max})"),
        "schema": { "type": "integer", "minimum": min, "maximum": max } })
}

/// A camera stream's id, as the service accepts it.
fn stream_param() -> Value {
    json!({ "name": "stream", "in": "path", "required": true,
        "description": "the screen's stream id: 8-64 letters, digits or '-'",
        "schema": { "type": "string", "pattern": "^[A-Za-z0-9-]{8,64}$" } })
}

fn query_param(name: &str, what: &str, ty: &str, required: bool) -> Value {
    json!({ "name": name, "in": "query", "required": required, "description": what, "schema": { "type": ty } })
}

/// `{MEDIA: {"schema": SCHEMA}}`.
fn media_type(media: &str, schema: Value) -> Value {
    let mut m = Map::new();
    m.insert(media.to_string(), json!({ "schema": schema }));
    Value::Object(m)
}

/// The whole document.
pub fn document() -> Value {
    let mut g = SchemaSettings::draft2020_12()
        .with(|s| s.definitions_path = "/components/schemas".into())
        .into_generator();
    let err = g.subschema_for::<ErrorBody>().to_value();
    let ask = g.subschema_for::<AskBody>().to_value();
    let answer = g.subschema_for::<AnswerJson<'static>>().to_value();
    let scan = g.subschema_for::<ScanReport>().to_value();
    let transcript = g.subschema_for::<TranscriptJson>().to_value();
    let product = g.subschema_for::<ProductInfo>().to_value();
    let hits = g.subschema_for::<Vec<SearchHit>>().to_value();
    let demand = g.subschema_for::<Vec<DemandCount>>().to_value();
    let import = g.subschema_for::<ImportReport>().to_value();
    let camera = g.subschema_for::<CameraFrame>().to_value();
    let call_staff = g.subschema_for::<CallStaffBody>().to_value();
    let say = g.subschema_for::<SayBody>().to_value();
    let schemas = g.take_definitions(true);

    let j = |s: &Value| Some(("application/json", s.clone()));
    // A binary body: never empty (an empty one is a 400).
    let bin = |t: &'static str| {
        Some((
            t,
            json!({ "type": "string", "format": "binary", "contentMediaType": t, "minLength": 1 }),
        ))
    };
    let any = json!({ "type": "object" });
    // Failures every inference endpoint can give.
    let failures = |extra: &[(u16, &'static str)]| {
        let mut v: Vec<Resp> = extra.iter().map(|(c, d)| (*c, *d, j(&err))).collect();
        v.push((
            503,
            "models loading, or the queue is full (Retry-After)",
            j(&err),
        ));
        v.push((504, "the request took longer than the time limit", j(&err)));
        v
    };
    let staff_failures = |extra: &[(u16, &'static str)]| {
        let mut v = failures(extra);
        v.push((401, "no or wrong bearer token", j(&err)));
        v.push((
            403,
            "staff endpoints are off (no service.staff_token_file)",
            j(&err),
        ));
        v
    };
    let with = |ok: Resp, rest: Vec<Resp>| {
        let mut v = vec![ok];
        v.extend(rest);
        v
    };
    let ops = vec![
        Op {
            method: "get",
            path: "/",
            summary: "the kiosk's touch screen (HTML; its scripts and styles under /ui/, all embedded)",
            staff: false,
            request: None,
            responses: vec![(
                200,
                "the page",
                Some(("text/html", json!({ "type": "string" }))),
            )],
            parameters: vec![],
        },
        Op {
            method: "get",
            path: "/health",
            summary: "503 while the models load, 200 when the kiosk can answer",
            staff: false,
            request: None,
            responses: vec![(200, "ready", j(&any)), (503, "loading or failed", j(&any))],
            parameters: vec![],
        },
        Op {
            method: "get",
            path: "/metrics",
            summary: "Prometheus text: requests, latencies, stages, queues, sessions, load times",
            staff: false,
            request: None,
            responses: vec![(
                200,
                "metrics",
                Some(("text/plain", json!({ "type": "string" }))),
            )],
            parameters: vec![],
        },
        Op {
            method: "get",
            path: "/openapi.json",
            summary: "this document",
            staff: false,
            request: None,
            responses: vec![(200, "OpenAPI 3.1", j(&any))],
            parameters: vec![],
        },
        Op {
            method: "get",
            path: "/v1/kiosk",
            summary: "the device, its privacy notice and consent rule",
            staff: false,
            request: None,
            responses: vec![(200, "the kiosk", j(&any))],
            parameters: vec![],
        },
        Op {
            method: "post",
            path: "/v1/ask",
            summary: "one question in a conversation, answered from the store's data",
            staff: false,
            request: j(&ask),
            responses: with(
                (200, "the answer", j(&answer)),
                failures(&[
                    (400, "not JSON, not UTF-8, unknown field, empty"),
                    (404, "the sku is not in the catalog"),
                    (413, "the body or question is too long"),
                ]),
            ),
            parameters: vec![],
        },
        Op {
            method: "delete",
            path: "/v1/sessions/{id}",
            summary: "ends a conversation now (nothing of it is kept)",
            staff: false,
            request: None,
            responses: with((204, "erased", None), failures(&[(404, "no such session")])),
            parameters: vec![path_param("id", "the session id from an answer")],
        },
        Op {
            method: "post",
            path: "/v1/scan",
            summary: "the product in a photo",
            staff: false,
            request: bin("application/octet-stream"),
            responses: with(
                (200, "identified or unknown, with the top matches", j(&scan)),
                failures(&[
                    (400, "empty body or bad query"),
                    (413, "larger than 20 MB"),
                    (422, "not a readable JPEG, PNG or WebP"),
                ]),
            ),
            parameters: vec![ranged("top", "matches listed", 1, 50)],
        },
        Op {
            method: "post",
            path: "/v1/overlay",
            summary: "the AR overlay for a camera frame: PNG, or JSON with Accept: application/json",
            staff: false,
            request: bin("application/octet-stream"),
            responses: with(
                (
                    200,
                    "the frame with its cards (image/png), or objects and cards (JSON)",
                    bin("image/png"),
                ),
                failures(&[
                    (400, "empty body"),
                    (413, "larger than 20 MB"),
                    (422, "not a readable image"),
                    (500, "the overlay could not be drawn"),
                ]),
            ),
            parameters: vec![],
        },
        Op {
            method: "post",
            path: "/v1/transcribe",
            summary: "the transcript of a WAV (any rate, channels, 8-32 bit)",
            staff: false,
            request: bin("audio/wav"),
            responses: with(
                (200, "the transcript", j(&transcript)),
                failures(&[
                    (400, "empty body"),
                    (413, "larger than 50 MB"),
                    (422, "not a readable WAV"),
                ]),
            ),
            parameters: vec![],
        },
        Op {
            method: "post",
            path: "/v1/say",
            summary: "text spoken in the store's voice (models.tts): a 16-bit mono WAV at the voice's rate",
            staff: false,
            request: j(&say),
            responses: with(
                (200, "the speech", bin("audio/wav")),
                failures(&[
                    (400, "not JSON, unknown field"),
                    (422, "nothing speakable, or longer than 4000 characters"),
                ]),
            ),
            parameters: vec![],
        },
        Op {
            method: "post",
            path: "/v1/camera/{stream}",
            summary: "one frame of a screen's live camera: its products' cards, steadied across the stream's frames and laid out in the display size w x h",
            staff: false,
            request: bin("image/jpeg"),
            responses: with(
                (200, "the cards", j(&camera)),
                failures(&[
                    (
                        400,
                        "empty body, a bad stream id, or w/h not given together",
                    ),
                    (413, "larger than 20 MB"),
                    (422, "not a readable image"),
                ]),
            ),
            parameters: vec![
                stream_param(),
                json!({ "name": "w", "in": "query", "required": false,
                    "description": "display width, CSS pixels (alone: the height follows the frame's shape)",
                    "schema": { "type": "number", "minimum": 1, "maximum": 16384 } }),
                json!({ "name": "h", "in": "query", "required": false,
                    "description": "display height, CSS pixels (alone: the width follows the frame's shape)",
                    "schema": { "type": "number", "minimum": 1, "maximum": 16384 } }),
            ],
        },
        Op {
            method: "delete",
            path: "/v1/camera/{stream}",
            summary: "ends a camera stream (its tracks are erased)",
            staff: false,
            request: None,
            responses: vec![
                (204, "ended", None),
                (400, "a bad stream id", j(&err)),
                (404, "no such stream", j(&err)),
            ],
            parameters: vec![stream_param()],
        },
        Op {
            method: "post",
            path: "/v1/call-staff",
            summary: "the shopper asks for a member of staff (the staff's event stream and webhook hear of it)",
            staff: false,
            request: j(&call_staff),
            responses: with(
                (200, "staff called", j(&any)),
                failures(&[
                    (400, "not JSON for this endpoint"),
                    (413, "larger than 64 KB"),
                ]),
            ),
            parameters: vec![],
        },
        Op {
            method: "get",
            path: "/v1/products/{sku}",
            summary: "one product with its stock and promotions",
            staff: false,
            request: None,
            responses: with(
                (200, "the product", j(&product)),
                failures(&[(404, "no such sku")]),
            ),
            parameters: vec![path_param("sku", "the product's sku")],
        },
        Op {
            method: "get",
            path: "/v1/search",
            summary: "products by name (fuzzy), best first",
            staff: false,
            request: None,
            responses: with(
                (200, "matches", j(&hits)),
                failures(&[(400, "no ?q= or a bad query")]),
            ),
            parameters: vec![
                json!({ "name": "q", "in": "query", "required": true, "description": "the text (not blank)",
                    "schema": { "type": "string", "minLength": 1, "pattern": "\\S" } }),
                ranged("top", "matches", 1, 100),
            ],
        },
        Op {
            method: "get",
            path: "/v1/voice",
            summary: "WebSocket: one spoken question per run (start, 16-bit PCM frames, end; run-start ... intent-end, run-end)",
            staff: false,
            request: None,
            responses: with(
                (101, "switching to the WebSocket", None),
                failures(&[(400, "not a WebSocket request"), (426, "upgrade required")]),
            ),
            parameters: vec![],
        },
        Op {
            method: "get",
            path: "/v1/staff/events",
            summary: "server-sent events: staff-call (kiosk, time) and demand (kind, product, hour)",
            staff: true,
            request: None,
            responses: with(
                (
                    200,
                    "the event stream",
                    Some(("text/event-stream", json!({ "type": "string" }))),
                ),
                staff_failures(&[]),
            ),
            parameters: vec![],
        },
        Op {
            method: "get",
            path: "/v1/staff/demand",
            summary: "demand signals counted per hour and product (never the words)",
            staff: true,
            request: None,
            responses: with((200, "counts", j(&demand)), staff_failures(&[])),
            parameters: vec![],
        },
        Op {
            method: "post",
            path: "/v1/staff/catalog",
            summary: "imports products, stock and promotions (CSV or JSON Lines, as `aisle catalog import`)",
            staff: true,
            request: Some(("text/csv", json!({ "type": "string", "minLength": 1 }))),
            responses: with(
                (200, "what changed", j(&import)),
                staff_failures(&[
                    (400, "empty body or bad query"),
                    (413, "larger than 64 MB"),
                    (
                        422,
                        "bad rows (by line; nothing imported unless ?skip_bad_rows=true)",
                    ),
                ]),
            ),
            parameters: vec![query_param(
                "skip_bad_rows",
                "import the good rows of a file with errors",
                "boolean",
                false,
            )],
        },
        Op {
            method: "post",
            path: "/v1/staff/products/{sku}/photos",
            summary: "a reference photo of a product (only its embedding is kept)",
            staff: true,
            request: bin("application/octet-stream"),
            responses: with(
                (200, "added and enrolled counts", j(&any)),
                staff_failures(&[
                    (400, "empty body"),
                    (413, "larger than 20 MB"),
                    (422, "not a readable image, or no such sku"),
                ]),
            ),
            parameters: vec![path_param("sku", "the product's sku")],
        },
    ];
    let mut paths = Map::new();
    for op in ops {
        let mut responses = Map::new();
        for (code, desc, content) in op.responses {
            let mut r = json!({ "description": desc });
            if let Some((media, schema)) = content {
                r["content"] = media_type(media, schema);
            }
            responses.insert(code.to_string(), r);
        }
        let mut o = json!({ "summary": op.summary, "responses": responses });
        if let Some((media, schema)) = op.request {
            let mut content = media_type(media, schema.clone());
            // Binary bodies are read whatever their declared type.
            if media.starts_with("audio/") || media.starts_with("image/") {
                content["application/octet-stream"] = json!({ "schema": schema });
            }
            // `POST /v1/call-staff` may come without a body.
            let required = op.path != "/v1/call-staff";
            o["requestBody"] = json!({ "required": required, "content": content });
        }
        if !op.parameters.is_empty() {
            o["parameters"] = Value::Array(op.parameters);
        }
        if op.staff {
            o["security"] = json!([{ "staffToken": [] }]);
        }
        let entry = paths
            .entry(op.path.to_string())
            .or_insert_with(|| json!({}));
        entry[op.method] = o;
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "aisle kiosk API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The on-device shopping assistant, served on loopback by `aisle serve`. Every failure is {\"error\": {\"code\", \"message\"}}.",
        },
        "servers": [{ "url": "http://127.0.0.1:8480" }],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": { "staffToken": { "type": "http", "scheme": "bearer" } },
        },
    })
}
