// Stop strings over streamed text (OpenAI `stop`). A stop string may arrive split over many
// deltas, so the matcher holds back only the tail that could still grow into a stop string (the
// longest suffix that is a prefix of one) and releases it as soon as it cannot. Nothing of a stop
// string is ever emitted; the text before the first stop string to complete is (see firstStopMatch).

export interface StopPushResult {
  /** Text safe to send now (everything before a match, if one happened). */
  emit: string;
  /** A stop string matched: the generation should end; later pushes emit nothing. */
  stopped: boolean;
  /** The stop string that matched (null if none). */
  matched: string | null;
}

export class StopStringMatcher {
  private readonly stops: string[];
  private readonly failure: Int32Array[];
  private held = '';
  private done = false;

  constructor(stops: readonly string[]) {
    // Empty strings would match everywhere; OpenAI ignores them in practice.
    this.stops = [...new Set(stops.filter((s) => typeof s === 'string' && s.length > 0))];
    this.failure = this.stops.map(failureFunction);
  }

  get stopped(): boolean {
    return this.done;
  }

  push(text: string): StopPushResult {
    if (this.done) return { emit: '', stopped: true, matched: null };
    if (this.stops.length === 0) return { emit: text, stopped: false, matched: null };
    const buf = this.held + text;

    const m = firstStopMatch(buf, this.stops);
    if (m !== null) {
      this.done = true;
      this.held = '';
      return { emit: buf.slice(0, m.index), stopped: true, matched: m.stop };
    }

    const keep = this.partialSuffixLength(buf);
    let cut = buf.length - keep;
    // Never split a surrogate pair between emitted and held text.
    if (cut > 0 && cut < buf.length && isHighSurrogate(buf.charCodeAt(cut - 1))) cut -= 1;
    this.held = buf.slice(cut);
    return { emit: buf.slice(0, cut), stopped: false, matched: null };
  }

  /** Generation ended for another reason: the held tail was not a stop string after all. */
  flush(): string {
    if (this.done) return '';
    const out = this.held;
    this.held = '';
    return out;
  }

  /**
   * Length of the longest suffix of `buf` that is a proper prefix of some stop string. KMP over the
   * last (stop length − 1) characters: linear in the stop lengths, so long stop strings cannot make
   * each token quadratic.
   */
  private partialSuffixLength(buf: string): number {
    let best = 0;
    for (let k = 0; k < this.stops.length; k++) {
      const stop = this.stops[k];
      const fail = this.failure[k];
      let state = 0;
      for (let i = Math.max(0, buf.length - (stop.length - 1)); i < buf.length; i++) {
        const c = buf.charCodeAt(i);
        while (state > 0 && stop.charCodeAt(state) !== c) state = fail[state - 1];
        if (stop.charCodeAt(state) === c) state++;
        // A full match cannot happen here: push() found none in buf.
        if (state === stop.length) state = fail[state - 1];
      }
      if (state > best) best = state;
    }
    return best;
  }
}

/** KMP failure function: fail[i] = length of the longest proper border of s[0..i]. */
function failureFunction(s: string): Int32Array {
  const fail = new Int32Array(s.length);
  for (let i = 1, k = 0; i < s.length; i++) {
    while (k > 0 && s.charCodeAt(i) !== s.charCodeAt(k)) k = fail[k - 1];
    if (s.charCodeAt(i) === s.charCodeAt(k)) k++;
    fail[i] = k;
  }
  return fail;
}

/**
 * The stop string that *completes* first in `text` (generation would have ended there); on a tie
 * the one starting earlier. Deciding by end position makes streaming results independent of how
 * the text was split into deltas: no match can start inside text the matcher already emitted,
 * because any tail that could begin a stop string is held back.
 */
export function firstStopMatch(text: string, stops: readonly string[]): { index: number; stop: string } | null {
  let best: { index: number; stop: string } | null = null;
  let bestEnd = Infinity;
  for (const s of stops) {
    if (!s) continue;
    const i = text.indexOf(s);
    if (i === -1) continue;
    const e = i + s.length;
    if (e < bestEnd || (e === bestEnd && best !== null && i < best.index)) {
      best = { index: i, stop: s };
      bestEnd = e;
    }
  }
  return best;
}

function isHighSurrogate(code: number): boolean {
  return code >= 0xd800 && code <= 0xdbff;
}
