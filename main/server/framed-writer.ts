// The writer of an API whose answer is a sequence of named events built by an encoder (Anthropic
// Messages, OpenAI Responses): the opening events once the prompt's numbers are known, the events of
// each output delta, the closing events; or, without streaming, the encoder's whole answer as JSON.
// The encoder owns the wire format; this owns when each part is written.
import type { DoneEvent, OutputSource, ResponseWriter, WriterContext } from './generation.ts';
import type { OutputEvent } from './output-split.ts';

export interface NamedFrame {
  event: string;
  data: unknown;
}

export interface FrameEncoder {
  /** Opening events, with the prompt's numbers as known then (called once, streaming only). */
  start(prompt: { promptTokens: number; cachedTokens: number }): NamedFrame[];
  /** The events of some output events (streaming; without streaming, the whole output once). */
  push(events: OutputEvent[]): NamedFrame[];
  /** Closing events of the finished generation (sets the request's finish reason). */
  finish(ev: DoneEvent): NamedFrame[];
  /** Without streaming: the whole answer. */
  body(): unknown;
  /** After the last byte is handed to the socket (e.g. storing the answer). */
  afterEnd?(): void;
}

export function framedWriter(ctx: WriterContext, output: OutputSource, enc: FrameEncoder): ResponseWriter {
  const { prep, sse, track } = ctx;
  let started = false;
  const send = async (frames: NamedFrame[]) => {
    for (const f of frames) await sse!.sendEvent(f.event, f.data);
  };
  /** The opening events as soon as the prompt's numbers are known (first prefill chunk, or the first text of a cache hit). */
  const start = async (promptTokens: number, cachedTokens: number) => {
    if (!sse || started) return;
    started = true;
    await send(enc.start({ promptTokens, cachedTokens }));
  };
  return {
    async prefill(ev) {
      await start(ev.promptTokens, ev.cachedTokens);
    },
    async delta(ev) {
      if (!sse) return;
      await start(prep.promptIds.length, track.responseCacheHit ? prep.promptIds.length : 0);
      await send(enc.push(output.push(ev)));
    },
    async done(ev, text) {
      if (sse) {
        await start(ev.promptTokens, ev.cachedTokens);
        await send(enc.push(output.flush()));
        await send(enc.finish(ev));
        await sse.done();
      } else {
        enc.push(output.all(text));
        enc.finish(ev);
        ctx.writeJson(enc.body());
      }
      enc.afterEnd?.();
    },
  };
}
