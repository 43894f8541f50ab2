// Composition of the hardening pieces around one running engine + server: the degradation state
// machine, the persisted response cache, the memory sampler (pressure → degradation, per-request
// memory admission) and the metrics (JSON/Prometheus/live feed) — all fed from the same events so
// /health, /v1/metrics, the logs and the dashboard can never disagree.
// Used by `mlx-bar serve` and (through startServe) by the desktop shell.
import type { EngineClient, ModelInfo } from '../engine/types.ts';
import type { ServerHooks } from '../server/hooks.ts';
import type { Settings } from '../settings/schema.ts';
import { Degradation } from '../hardening/degradation.ts';
import { createMemorySampler, effectiveContextLength, watermarksFromSettings, type MemorySampler } from '../hardening/memory.ts';
import { createMetrics, type Metrics } from '../hardening/metrics.ts';
import { registerMetricsRoutes } from '../hardening/metrics-routes.ts';
import { sanitizeMessage } from '../common/sanitize.ts';
import type { UpstreamMetrics } from '../common/metrics-types.ts';
import { openResponseCache } from '../caches/index.ts';
import type { ResponseCache } from '../caches/response-cache.ts';
import { startPrefixPersistence, type PrefixEngine, type PrefixPersistence } from './prefix-persistence.ts';

/** Bumped when the engine's numerics change: cached responses of another engine are misses. */
export const ENGINE_VERSION = 'mlx-bar-engine-1';

export interface HardeningInput {
  engine: EngineClient;
  modelInfo: ModelInfo;
  text: { tokenizerFingerprint: string; templateFingerprint: string };
  dataDir: string;
  settings: Pick<Settings, 'responseCache' | 'prefixCache' | 'memory' | 'contextLength' | 'maxQueue'>;
  log: (line: string) => void;
  /** The model started with is the built-in random-weight DEMO model (shown in the dashboard header). */
  demo?: boolean;
  /** Remote upstreams' statistics for /v1/metrics (label `upstream`). */
  upstreams?: () => UpstreamMetrics[];
  /** Remote models whose upstream's circuit breaker is open (degradation `upstream_down`). */
  upstreamsDown?: () => readonly string[];
}

export interface Hardening {
  hooks: ServerHooks;
  metrics: Metrics;
  degradation: Degradation;
  memory: MemorySampler;
  responseCache: ResponseCache | null;
  /**
   * Prefix KV persistence (null when `prefixCache.persist` is off or the engine cannot export).
   * The model manager's beforeRelease/afterLoad hooks call its flush('switch') / settled().
   */
  prefixPersistence: PrefixPersistence | null;
  close(): Promise<void>;
}

type OpenedCache = Awaited<ReturnType<typeof openResponseCache>>;

/**
 * The response cache (opt-in). Opening over a corrupt cache quarantines what is bad and reports the
 * errors to the degradation machine: the server starts degraded-but-serving, never crashes.
 */
async function openCache(input: HardeningInput, degradation: Degradation): Promise<OpenedCache | null> {
  const { modelInfo, settings, log } = input;
  try {
    const fingerprints = {
      model: modelInfo.fingerprint,
      tokenizer: input.text.tokenizerFingerprint,
      template: input.text.templateFingerprint,
      engine: `${ENGINE_VERSION}-${modelInfo.computeDtype}`,
    };
    const { enabled, maxEntries, maxBytes } = settings.responseCache;
    const cache = await openResponseCache(input.dataDir, fingerprints, degradation, { response: { enabled, maxEntries, maxBytes } });
    if (cache.opened.corrupt) log(`cache: quarantined ${cache.opened.corrupt} corrupt entr(ies) at startup`);
    if (cache.opened.notOurs) log(`cache: skipped ${cache.opened.notOurs} file(s) named like entries that are not regular files (left alone)`);
    return cache;
  } catch (err) {
    // An unusable cache folder disables the cache, not the server.
    log(`cache: unavailable (${sanitizeMessage(err)}); serving without a response cache`);
    degradation.recordCacheError('open', err);
    return null;
  }
}

/** The memory sampler: pressure levels drive the degradation machine; the soft watermark gives back cache memory. */
function samplerFor(input: HardeningInput, degradation: Degradation, cache: OpenedCache | null, prefix: PrefixPersistence | null): MemorySampler {
  const { engine, settings, log } = input;
  const { soft, hard } = watermarksFromSettings(settings.memory);
  return createMemorySampler({
    engineStats: () => engine.stats(),
    modelLoaded: () => engine.state === 'ready',
    soft,
    hard,
    onSoft: () => {
      degradation.reportMemoryPressure('soft');
      // Soft watermark: give back cache memory. The engine's prefix KV is by far the largest; save
      // what is worth keeping to disk first (when persistence is on), then drop it.
      cache?.response.clearMemory();
      const clearable = engine as unknown as { clearPrefixCache?: () => Promise<number> };
      void (prefix ? prefix.flush() : Promise.resolve(0))
        .then(() => clearable.clearPrefixCache?.())
        .then((freed) => freed && log(`memory: soft watermark, released ${Math.round(freed / 1048576)} MB of prompt-prefix cache and KV buffers`))
        .catch(() => {});
    },
    onHard: () => degradation.reportMemoryPressure('hard'),
    onNormal: () => degradation.reportMemoryPressure('normal'),
  });
}

function metricsFor(input: HardeningInput, parts: { degradation: Degradation; memory: MemorySampler; cache: OpenedCache | null; prefix: PrefixPersistence | null }): Metrics {
  const { engine, modelInfo, settings } = input;
  const { degradation, cache, prefix } = parts;
  return createMetrics({
    memory: parts.memory,
    upstreams: input.upstreams,
    engineStats: () => engine.stats(),
    degradation: () => degradation.status(),
    cacheStats: () => {
      // What each cache holds on disk (its real contents; the response cache's memory LRU is only
      // a front for it). The prefix store is the one of the model loaded now.
      const rc = cache?.response.stats();
      const pc = prefix?.stats();
      return {
        ...(rc ? { responseCache: { entries: rc.storedEntries, bytes: rc.storedBytes } } : {}),
        ...(pc ? { prefixCache: { entries: pc.entries, bytes: pc.bytes } } : {}),
      };
    },
    modelInfo: () => {
      const id = engine.model?.id ?? modelInfo.id;
      return { id, state: engine.state, demo: !!input.demo && id === modelInfo.id };
    },
    // "off" is shown as such, not as an empty hit rate: the response cache is opt-in.
    responseCacheEnabled: () => !!cache && settings.responseCache.enabled,
  });
}

/** Corruptions are counted by the quarantine; new ones are mirrored into the metrics (~1 Hz). Returns the stop function. */
function mirrorCorruptions(metrics: Metrics, cache: OpenedCache | null, prefix: PrefixPersistence | null): () => void {
  const seen: Record<string, number> = {};
  const sync = () => {
    const total: Record<string, number> = { ...(cache?.corruptions() ?? {}) };
    for (const [reason, n] of Object.entries(prefix?.corruptions() ?? {})) total[reason] = (total[reason] ?? 0) + n;
    for (const [reason, n] of Object.entries(total)) {
      for (let i = seen[reason] ?? 0; i < n; i++) metrics.recordCacheCorruption(reason);
      seen[reason] = n;
    }
  };
  sync();
  const timer = setInterval(sync, 1000);
  timer.unref();
  return () => clearInterval(timer);
}

/** The server's hooks, all fed from the same pieces. */
function hooksFor(input: HardeningInput, parts: { degradation: Degradation; memory: MemorySampler; metrics: Metrics; cache: OpenedCache | null; prefix: PrefixPersistence | null }): ServerHooks {
  const { engine, settings } = input;
  const { degradation, memory, metrics, prefix } = parts;
  const hooks: ServerHooks = {
    onRequestRecord: (r) => {
      metrics.recordRequest(r);
      prefix?.noteActivity(); // persist new prompt prefixes once the server is idle
    },
    onLoad: (l) => {
      metrics.setQueue(l.active, l.queued);
      degradation.reportQueueDepth(l.queued, settings.maxQueue);
    },
    metricsRoutes: (app) => registerMetricsRoutes(app, metrics),
    // On arrival (the request may still wait in the queue): degradation, and memory as sampled.
    admission: (info) =>
      degradation.admission() ??
      (engine.model
        ? memory.admit(engine.model, info.promptTokens, info.maxTokens, {
            contextLength: effectiveContextLength(engine.model, settings.contextLength, memory.budgetBytes()),
            reservations: false,
          })
        : null),
    // When it starts: memory again, now counting the KV the running generations may still grow into,
    // and a reservation of its own worst case (released when it ends).
    reserve: (info) =>
      engine.model
        ? memory.reserve(engine.model, info.promptTokens, info.maxTokens, {
            contextLength: effectiveContextLength(engine.model, settings.contextLength, memory.budgetBytes()),
          })
        : { progress: () => {}, release: () => {} },
    // The contextLength setting resolved per model ("auto": its limit capped by what fits next to the weights).
    contextLimit: (model) => effectiveContextLength(model, settings.contextLength, memory.budgetBytes()),
    getHealth: () => ({ degradation: degradation.status() }),
  };
  const cacheHook = parts.cache?.response.serverHook();
  if (cacheHook && settings.responseCache.enabled) {
    hooks.responseCache = {
      async get(key) {
        const hit = await cacheHook.get(key);
        metrics.recordResponseCache(hit ? 'hit' : 'miss');
        return hit;
      },
      set: (key, value) => cacheHook.set(key, value),
    };
  }
  return hooks;
}

export async function attachHardening(input: HardeningInput): Promise<Hardening> {
  const { engine, settings, log } = input;
  const degradation = new Degradation({ log: (line) => log(sanitizeMessage(line)) }); // logs every transition
  const detachEngine = degradation.attachEngine(engine);
  if (input.upstreamsDown) degradation.watchUpstreams(input.upstreamsDown);
  const cache = await openCache(input, degradation);

  // Prefix KV persistence: warm restarts for long repeated prompts; follows model switches (the
  // store of whichever model the engine holds; see prefix-persistence.ts).
  const prefix = settings.prefixCache.persist
    ? await startPrefixPersistence({
        engine: engine as unknown as PrefixEngine,
        dataDir: input.dataDir,
        // Of the model the engine holds at each load (a switched-to model may compute differently).
        engineVersion: (model) => `${ENGINE_VERSION}-${model.computeDtype}`,
        maxBytes: settings.prefixCache.maxBytes,
        maxEntries: settings.prefixCache.maxEntries,
        health: degradation,
        log,
      })
    : null;

  const memory = samplerFor(input, degradation, cache, prefix);
  const metrics = metricsFor(input, { degradation, memory, cache, prefix });
  memory.start();
  const stopMirror = mirrorCorruptions(metrics, cache, prefix);
  const onCrash = () => metrics.recordEngineRestart();
  engine.on('crash', onCrash);
  const hooks = hooksFor(input, { degradation, memory, metrics, cache, prefix });

  return {
    hooks,
    metrics,
    degradation,
    memory,
    responseCache: cache?.response ?? null,
    prefixPersistence: prefix,
    async close() {
      await prefix?.close(10_000).catch(() => {});
      stopMirror();
      engine.off('crash', onCrash);
      detachEngine();
      memory.stop();
      metrics.close();
      await cache?.flush(2000).catch(() => false);
    },
  };
}
