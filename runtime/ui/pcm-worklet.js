// The microphone as 16-bit little-endian mono PCM at the context's rate (16 kHz
// where the browser allows it), posted in 20 ms chunks for the /v1/voice socket: the
// service's listen loop decodes when less than 100 ms is waiting, so smaller chunks
// let it speculate on the end of the question as soon as the speaker stops.
"use strict";

class Pcm16 extends AudioWorkletProcessor {
  constructor() {
    super();
    this.size = Math.round(sampleRate / 50);
    this.buf = new Int16Array(this.size);
    this.n = 0;
  }

  process(inputs) {
    const ch = inputs[0] && inputs[0][0];
    if (!ch) return true;
    for (let i = 0; i < ch.length; i++) {
      const x = Math.max(-1, Math.min(1, ch[i]));
      this.buf[this.n++] = x < 0 ? x * 0x8000 : x * 0x7fff;
      if (this.n === this.size) {
        this.port.postMessage(this.buf.buffer, [this.buf.buffer]);
        this.buf = new Int16Array(this.size);
        this.n = 0;
      }
    }
    return true;
  }
}

registerProcessor("pcm16", Pcm16);
