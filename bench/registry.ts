// The benchmark registry: each area adds one named section (bench/sections.ts lists them). A section
// returns a JSON-able result plus optional headline ratios; the runner prints
// `{ "results": { <name>: result }, "ratios": { "<name>.<ratio>": number } }` on stdout.
// Progress and notes go to stderr so stdout stays one JSON object.

export interface BenchOptions {
  /** `--quick`: smallest shapes and fewest steps; for a smoke run, not for the report. */
  quick: boolean;
  /** Free-form `--key value` / `--flag` arguments, for section-specific switches. */
  args: Record<string, string | boolean>;
  /** Progress line on stderr, prefixed with the section name. */
  log(line: string): void;
}

export interface BenchResult {
  result: unknown;
  /** Headline numbers (e.g. a speed-up or efficiency); keys are prefixed with the section name. */
  ratios?: Record<string, number | null>;
}

export interface BenchSection {
  name: string;
  description: string;
  run(opts: BenchOptions): Promise<BenchResult>;
}
