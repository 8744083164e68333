"""Peer for `aisle bench ar`: the same frame and overlay, drawn the way a Python kiosk
would (OpenCV: filled panels blended over the frame, borders, Hershey text), and the
same SSD MobileNetV2 as MediaPipe ships it (fp16 TFLite) in LiteRT with XNNPACK.

argv: frame.png overlay.json packed_assets.data threads runs
stdout: one JSON document.
"""
import json
import sys
import time

import cv2
import numpy as np
from ai_edge_litert.interpreter import Interpreter
from PIL import Image

frame_path, overlay_path, packed, threads, runs = sys.argv[1:6]
threads, runs = int(threads), int(runs)
cv2.setNumThreads(threads)
frame = cv2.cvtColor(cv2.imread(frame_path), cv2.COLOR_BGR2RGB)
overlay = json.load(open(overlay_path))

STOCK = {"in-stock": (46, 204, 113), "low": (243, 156, 18), "out": (231, 76, 60)}
ACCENT = (80, 200, 255)


def stock_colour(stock):
    key = stock if isinstance(stock, str) else next(iter(stock))
    return STOCK.get(key, (200, 200, 200))


def draw(img):
    out = img.copy()
    panel = out.copy()
    for c in overlay["cards"]:
        r = c["rect"]
        cv2.rectangle(panel, (int(r["x"]), int(r["y"])), (int(r["x"] + r["w"]), int(r["y"] + r["h"])), (16, 20, 28), -1)
    cv2.addWeighted(panel, 0.88, out, 0.12, 0, out)
    for c in overlay["cards"]:
        r, p = c["rect"], c["product"]
        cv2.rectangle(out, (int(p["x"]), int(p["y"])), (int(p["x"] + p["w"]), int(p["y"] + p["h"])), ACCENT, 3)
        (x0, y0), (x1, y1) = c["leader"]
        cv2.line(out, (int(x0), int(y0)), (int(x1), int(y1)), ACCENT, 3)
        cv2.rectangle(out, (int(r["x"]), int(r["y"])), (int(r["x"] + r["w"]), int(r["y"] + r["h"])), (255, 255, 255), 2)
        b = c["badge"]
        cv2.circle(out, (int(b["x"] + b["w"] / 2), int(b["y"] + b["h"] / 2)), int(b["w"] / 2), stock_colour(c["stock"]), -1)
        for line in c["lines"]:
            scale = line["px"] / 30.0
            cv2.putText(out, line["text"].replace("\u2192", "->"), (int(line["x"]), int(line["y"] + line["px"])),
                        cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), max(1, int(scale * 2)), cv2.LINE_AA)
    return out


def peak_mib():
    # VmHWM of this process's own memory: getrusage's ru_maxrss also counts the
    # image of the process that started it (kept across exec).
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return None


def median_ms(f):
    f()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        f()
        times.append((time.perf_counter() - t) * 1000)
    return float(np.median(times))


draw_ms = median_ms(lambda: draw(frame))

data = open(packed, "rb").read()
start = next(p for p in range(len(data) - 8) if data[p + 4:p + 8] == b"TFL3")
interp = Interpreter(model_content=data[start:], num_threads=threads)
interp.allocate_tensors()
inp = interp.get_input_details()[0]["index"]
pil = Image.fromarray(frame)


def detect():
    x = np.asarray(pil.resize((300, 300), Image.BILINEAR), dtype=np.float32) / 127.5 - 1.0
    interp.set_tensor(inp, x[None])
    interp.invoke()
    return [interp.get_tensor(o["index"]) for o in interp.get_output_details()]


detect_ms = median_ms(detect)
print(json.dumps({
    "peer": f"OpenCV {cv2.__version__} drawing; LiteRT (ai-edge-litert) XNNPACK on the original fp16 TFLite",
    "draw_ms": draw_ms,
    "detect_ms": detect_ms,
    "peak_mib": peak_mib(),
}))
