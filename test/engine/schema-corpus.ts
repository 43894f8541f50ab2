// A corpus of JSON Schemas as real client libraries emit them, built at test time from the libraries
// themselves: zod 4 (`z.toJSONSchema`, 2020-12 and draft-07 targets), openai-node's
// `zodResponseFormat` helper (strict mode: it refuses tuples, records and optional-without-null),
// the AI SDK's `zodSchema` (draft-07: array `items` + `additionalItems` for tuples), plus
// hand-written Pydantic v2 `model_json_schema()` output (Python clients). Each entry names its
// source and the issue-13 keywords it covers.
import { z } from 'zod';
import { zodResponseFormat } from 'openai/helpers/zod';
import { zodSchema } from 'ai';

export interface CorpusEntry {
  name: string;
  source: 'zod' | 'zod-draft7' | 'openai' | 'ai-sdk' | 'pydantic';
  schema: Record<string, unknown>;
}

const str = z.string().max(12);
/** Zod schemas; strings are bounded where the library allows it, so random documents end. */
function zodSchemas(): [string, z.ZodType][] {
  return [
    ['int', z.object({ n: z.number().int() })],
    ['int-range', z.object({ age: z.number().int().min(18).max(120), year: z.int().gte(1900).lte(2100) })],
    ['positive', z.object({ price: z.number().positive(), qty: z.number().int().nonnegative() })],
    ['negative-lt', z.object({ t: z.number().lt(5).gte(-3), d: z.number().int().negative().gt(-50) })],
    ['multipleOf', z.object({ step: z.number().int().multipleOf(5).min(0).max(100) })],
    ['int32', z.object({ a: z.int32(), b: z.uint32() })],
    ['email', z.object({ email: z.email() })],
    ['url', z.object({ homepage: z.url() })],
    ['uuid', z.object({ id: z.uuid() })],
    ['guid', z.object({ id: z.guid() })],
    ['datetime', z.object({ at: z.iso.datetime() })],
    ['date-time-offset', z.object({ at: z.iso.datetime({ offset: true }) })],
    ['date', z.object({ day: z.iso.date() })],
    ['time', z.object({ t: z.iso.time() })],
    ['duration', z.object({ d: z.iso.duration() })],
    ['ipv4', z.object({ ip: z.ipv4() })],
    ['ipv6', z.object({ ip: z.ipv6() })],
    ['hostname', z.object({ host: z.hostname() })],
    ['regex', z.object({ code: z.string().regex(/^[A-Z]{3}-\d{2,4}$/), slug: z.string().regex(/^[a-z0-9]+(?:-[a-z0-9]+)*$/).max(20) })],
    ['regex-unanchored', z.object({ s: z.string().regex(/ab|cd/).max(10) })],
    ['starts-ends', z.object({ s: z.string().startsWith('id_').endsWith('!').max(10) })],
    ['length', z.object({ pin: z.string().length(4).regex(/^\d+$/), name: z.string().min(2).max(8) })],
    ['email-length', z.object({ e: z.email().max(24) })],
    ['record', z.object({ scores: z.record(z.string(), z.number().int()) })],
    ['record-regex-keys', z.object({ env: z.record(z.string().regex(/^[A-Z_]+$/), str) })],
    ['record-enum-keys', z.object({ byDay: z.record(z.enum(['mon', 'tue', 'wed']), z.boolean()) })],
    ['partial-record', z.partialRecord(z.enum(['a', 'b', 'c']), z.number().int())],
    ['tuple', z.object({ point: z.tuple([z.number(), z.number()]), pair: z.tuple([str, z.boolean()]) })],
    ['tuple-rest', z.object({ row: z.tuple([str]).rest(z.number().int()) })],
    ['discriminated-union', z.object({ shape: z.discriminatedUnion('kind', [z.object({ kind: z.literal('circle'), r: z.number().positive() }), z.object({ kind: z.literal('rect'), w: z.number(), h: z.number() })]) })],
    ['union', z.object({ v: z.union([z.string().max(5), z.number().int(), z.boolean()]) })],
    ['intersection', z.intersection(z.object({ a: str }), z.object({ b: z.number().int() }))],
    ['nullable-optional', z.object({ a: str.nullable(), b: z.number().int().optional(), c: z.email().nullish() })],
    ['enum-literal', z.object({ c: z.enum(['red', 'green']), l: z.literal(42), m: z.literal(['x', 'y']) })],
    ['array-bounds', z.object({ tags: z.array(str).min(1).max(3), nums: z.array(z.number().int().min(0).max(9)).length(2) })],
    ['set-like', z.object({ ids: z.array(z.number().int().min(1).max(1000)).max(4) })],
    ['nested', z.object({ user: z.object({ id: z.uuid(), email: z.email(), roles: z.array(z.enum(['admin', 'user'])).max(2) }), createdAt: z.iso.datetime() })],
    ['strict-object', z.strictObject({ a: z.number().int().min(0) })],
    ['loose-object', z.looseObject({ a: z.number().int().max(9) })],
    ['catchall', z.object({ a: str }).catchall(z.number().int())],
  ];
}

/** Pydantic v2 `Model.model_json_schema()` output, written by hand from Pydantic's documented shapes. */
const PYDANTIC: [string, Record<string, unknown>][] = [
  ['user', {
    $defs: { Address: { properties: { street: { maxLength: 20, title: 'Street', type: 'string' }, zip: { anyOf: [{ pattern: '^\\d{5}$', type: 'string' }, { type: 'null' }], default: null, title: 'Zip' } }, required: ['street'], title: 'Address', type: 'object' } },
    properties: {
      name: { maxLength: 50, minLength: 1, title: 'Name', type: 'string' },
      age: { exclusiveMinimum: 0, maximum: 150, title: 'Age', type: 'integer' },
      email: { format: 'email', title: 'Email', type: 'string' },
      address: { $ref: '#/$defs/Address' },
      tags: { items: { maxLength: 8, type: 'string' }, title: 'Tags', type: 'array', uniqueItems: true, maxItems: 3 },
      scores: { additionalProperties: { type: 'number' }, title: 'Scores', type: 'object', maxProperties: 3 },
    },
    required: ['name', 'age', 'email', 'address'],
    title: 'User',
    type: 'object',
  }],
  ['constrained-types', {
    properties: {
      level: { maximum: 10, minimum: 1, title: 'Level', type: 'integer' },
      ratio: { exclusiveMaximum: 1, exclusiveMinimum: 0, title: 'Ratio', type: 'number' },
      bucket: { multipleOf: 5, title: 'Bucket', type: 'integer', minimum: 0, maximum: 50 },
      code: { pattern: '^[A-Z]{2}\\d{3}$', title: 'Code', type: 'string' },
    },
    required: ['level', 'ratio', 'bucket', 'code'],
    title: 'Constrained',
    type: 'object',
  }],
  ['formats', {
    properties: {
      id: { format: 'uuid', title: 'Id', type: 'string' },
      when: { format: 'date-time', title: 'When', type: 'string' },
      day: { format: 'date', title: 'Day', type: 'string' },
      at: { format: 'time', title: 'At', type: 'string' },
      ttl: { format: 'duration', title: 'Ttl', type: 'string' },
      site: { format: 'uri', maxLength: 2083, minLength: 1, title: 'Site', type: 'string' },
      ip: { format: 'ipv4', title: 'Ip', type: 'string' },
      ip6: { format: 'ipv6', title: 'Ip6', type: 'string' },
      host: { format: 'hostname', title: 'Host', type: 'string' },
    },
    required: ['id', 'when', 'day', 'at', 'ttl', 'site', 'ip', 'ip6', 'host'],
    title: 'Formats',
    type: 'object',
  }],
  ['tuple-set-dict', {
    properties: {
      pair: { maxItems: 2, minItems: 2, prefixItems: [{ type: 'integer' }, { maxLength: 6, type: 'string' }], title: 'Pair', type: 'array' },
      flags: { items: { type: 'boolean' }, title: 'Flags', type: 'array', uniqueItems: true },
      counts: { additionalProperties: { type: 'integer', minimum: 0 }, propertyNames: { pattern: '^[a-z]{1,5}$' }, title: 'Counts', type: 'object', minProperties: 1, maxProperties: 3 },
    },
    required: ['pair', 'flags', 'counts'],
    title: 'Collections',
    type: 'object',
  }],
  ['discriminated-union', {
    $defs: {
      Cat: { properties: { pet_type: { const: 'cat', title: 'Pet Type', type: 'string' }, meows: { title: 'Meows', type: 'integer', minimum: 0, maximum: 20 } }, required: ['pet_type', 'meows'], title: 'Cat', type: 'object' },
      Dog: { properties: { pet_type: { const: 'dog', title: 'Pet Type', type: 'string' }, barks: { title: 'Barks', type: 'number', minimum: 0 } }, required: ['pet_type', 'barks'], title: 'Dog', type: 'object' },
    },
    properties: { pet: { discriminator: { mapping: { cat: '#/$defs/Cat', dog: '#/$defs/Dog' }, propertyName: 'pet_type' }, oneOf: [{ $ref: '#/$defs/Cat' }, { $ref: '#/$defs/Dog' }], title: 'Pet' }, n: { title: 'N', type: 'integer' } },
    required: ['pet', 'n'],
    title: 'Model',
    type: 'object',
  }],
  ['recursive', {
    $defs: { Node: { properties: { value: { title: 'Value', type: 'integer', minimum: -5, maximum: 5 }, children: { items: { $ref: '#/$defs/Node' }, title: 'Children', type: 'array', maxItems: 2 } }, required: ['value'], title: 'Node', type: 'object' } },
    $ref: '#/$defs/Node',
  }],
  ['optional-none', {
    properties: { a: { anyOf: [{ type: 'integer', minimum: 0 }, { type: 'null' }], default: null, title: 'A' }, b: { anyOf: [{ format: 'email', type: 'string' }, { type: 'null' }], default: null, title: 'B' }, c: { enum: ['x', 'y'], title: 'C', type: 'string' } },
    title: 'Opt',
    type: 'object',
  }],
  ['enum-ref', {
    $defs: { Color: { enum: ['red', 'green', 'blue'], title: 'Color', type: 'string' } },
    properties: { color: { $ref: '#/$defs/Color' }, shades: { items: { $ref: '#/$defs/Color' }, title: 'Shades', type: 'array', uniqueItems: true, maxItems: 3 } },
    required: ['color', 'shades'],
    title: 'Paint',
    type: 'object',
  }],
  ['allof-inheritance', {
    $defs: { Base: { properties: { id: { type: 'integer', minimum: 1 } }, required: ['id'], type: 'object' } },
    allOf: [{ $ref: '#/$defs/Base' }, { properties: { label: { type: 'string', maxLength: 10 } }, required: ['label'], type: 'object' }],
    title: 'Derived',
  }],
  ['not-and-literals', {
    properties: { status: { not: { enum: ['deleted'] }, type: 'string', maxLength: 8 }, kind: { not: { type: 'null' }, enum: ['a', 'b', null] }, flag: { type: 'boolean' } },
    required: ['status', 'kind', 'flag'],
    title: 'NotModel',
    type: 'object',
  }],
  ['pattern-properties', {
    patternProperties: { '^S_': { type: 'string', maxLength: 6 }, '^I_': { type: 'integer' } },
    additionalProperties: false,
    minProperties: 1,
    maxProperties: 4,
    title: 'Dyn',
    type: 'object',
  }],
  // Pydantic emits no `contains` by itself; users add it with Field(json_schema_extra=…).
  ['contains-extra', {
    properties: {
      roles: { items: { enum: ['admin', 'user', 'guest'], type: 'string' }, type: 'array', uniqueItems: true, contains: { const: 'admin' }, maxItems: 3, title: 'Roles' },
      scores: { items: { type: 'integer', minimum: 0, maximum: 100 }, type: 'array', contains: { type: 'integer', minimum: 90 }, minContains: 2, maxItems: 4, title: 'Scores' },
      tags: { items: { type: 'string', maxLength: 6 }, type: 'array', contains: { const: 'urgent' }, minContains: 1, maxContains: 1, maxItems: 3, title: 'Tags' },
    },
    required: ['roles', 'scores', 'tags'],
    title: 'Ticket',
    type: 'object',
  }],
  ['draft07-tuple', {
    $schema: 'http://json-schema.org/draft-07/schema#',
    properties: { row: { items: [{ type: 'string', maxLength: 5 }, { type: 'integer', minimum: 0 }], additionalItems: false, type: 'array', minItems: 1 } },
    required: ['row'],
    type: 'object',
  }],
];

export async function buildCorpus(): Promise<CorpusEntry[]> {
  const out: CorpusEntry[] = [];
  for (const [name, s] of zodSchemas()) {
    out.push({ name, source: 'zod', schema: z.toJSONSchema(s) as Record<string, unknown> });
    out.push({ name, source: 'ai-sdk', schema: (await zodSchema(s as never).jsonSchema) as Record<string, unknown> });
    try {
      out.push({ name, source: 'openai', schema: zodResponseFormat(s as never, 'x').json_schema.schema as Record<string, unknown> });
    } catch {
      // The helper refuses what OpenAI's strict mode cannot express (tuples, records, optionals).
    }
  }
  for (const [name, s] of zodSchemas().slice(0, 12)) out.push({ name, source: 'zod-draft7', schema: z.toJSONSchema(s, { target: 'draft-7' }) as Record<string, unknown> });
  for (const [name, schema] of PYDANTIC) out.push({ name, source: 'pydantic', schema });
  return out;
}
