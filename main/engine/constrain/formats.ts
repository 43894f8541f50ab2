// JSON Schema `format` values we enforce, as patterns for regex.ts: the set OpenAI's structured
// outputs support. Each pattern accepts a subset of what ajv-formats' "full" mode accepts (the
// validator our tests and most clients use), never more — so a generated string always
// validates; where the subset is narrower it says so.
const DATE =
  // Days per month, Feb 29 only in leap years (the pattern zod emits).
  '(?:(?:\\d\\d[2468][048]|\\d\\d[13579][26]|\\d\\d0[48]|[02468][048]00|[13579][26]00)-02-29|\\d{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12]\\d|3[01])|(?:0[469]|11)-(?:0[1-9]|[12]\\d|30)|02-(?:0[1-9]|1\\d|2[0-8])))';
// RFC 3339 full-time: a time zone is required (ajv-formats' `time`); no leap second 60.
const TIME = '(?:[01]\\d|2[0-3]):[0-5]\\d:[0-5]\\d(?:\\.\\d{1,9})?(?:[Zz]|[+-](?:[01]\\d|2[0-3]):[0-5]\\d)';
const DUR_TIME = 'T(?:\\d+H(?:\\d+M)?(?:\\d+S)?|\\d+M(?:\\d+S)?|\\d+S)';
const LABEL = '[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?';
// URIs have no 63-character label limit (a much smaller automaton than LABEL's counter).
const URI_LABEL = '[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?';
const H16 = '[0-9A-Fa-f]{1,4}';
const OCTET = '(?:25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)';
const URI_CHAR = "(?:[A-Za-z0-9\\-._~!$&'()*+,;=:@]|%[0-9A-Fa-f]{2})";

export const FORMAT_PATTERNS: Readonly<Record<string, string>> = {
  date: `^${DATE}$`,
  time: `^${TIME}$`,
  'date-time': `^${DATE}[Tt]${TIME}$`,
  // ISO 8601 durations (P1Y2M3DT4H5M6S, P2W); at least one component.
  duration: `^P(?:\\d+W|(?:\\d+Y(?:\\d+M)?(?:\\d+D)?|\\d+M(?:\\d+D)?|\\d+D)(?:${DUR_TIME})?|${DUR_TIME})$`,
  // ajv-formats' full email rule (dot-atom local part, DNS-label domain).
  email: "^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\\.)+[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?$",
  // Narrower than RFC 3986: http(s) URLs with a DNS host, optional port, path, query, fragment.
  uri: `^https?://${URI_LABEL}(?:\\.${URI_LABEL})*(?::\\d{1,5})?(?:/${URI_CHAR}*)*(?:\\?(?:${URI_CHAR}|[/?])*)?(?:#(?:${URI_CHAR}|[/?])*)?$`,
  uuid: '^[0-9A-Fa-f]{8}-(?:[0-9A-Fa-f]{4}-){3}[0-9A-Fa-f]{12}$',
  ipv4: `^(?:${OCTET}\\.){3}${OCTET}$`,
  // Hexadecimal forms, with and without `::` (no embedded IPv4).
  ipv6: `^(?:(?:${H16}:){7}${H16}|(?:${H16}:){1,7}:|(?:${H16}:){1,6}:${H16}|(?:${H16}:){1,5}(?::${H16}){1,2}|(?:${H16}:){1,4}(?::${H16}){1,3}|(?:${H16}:){1,3}(?::${H16}){1,4}|(?:${H16}:){1,2}(?::${H16}){1,5}|${H16}:(?::${H16}){1,6}|:(?:(?::${H16}){1,7}|:))$`,
  // At most 4 labels (≤ 255 characters is then implied up to the trailing limit of 253: 4×63+3).
  hostname: `^(?=.{1,253}$)${LABEL}(?:\\.${LABEL}){0,3}$`,
};
