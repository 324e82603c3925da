import { validate as validateCron } from 'node-cron';

/**
 * The one validated environment object. Every setting Parley reads lives here;
 * nothing else in src/ touches process.env.
 */
export type NodeEnv = 'development' | 'production' | 'test';
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

export interface Env {
  /** @default 'development' */
  NODE_ENV: NodeEnv;
  /** HTTP and WebSocket port. 0 picks a free one. @default 4000 */
  PORT: number;
  /** @default '0.0.0.0' */
  HOST: string;
  /** postgres://… When absent an embedded PostgreSQL is started (data under EMBEDDED_PG_DIR). */
  DATABASE_URL?: string;
  /** @default '.data/postgres' */
  EMBEDDED_PG_DIR: string;
  /** @default 54329 */
  EMBEDDED_PG_PORT: number;
  /** Connections per instance. @default 10 */
  DB_POOL_MAX: number;
  /** Seconds a statement may run before PostgreSQL cancels it (the request then answers SERVICE_UNAVAILABLE). @default 15 */
  DB_STATEMENT_TIMEOUT: number;
  /** redis://… When absent, pub/sub, presence and rate limits stay in this process. */
  REDIS_URL?: string;
  /** Comma-separated host:port seeds of a Redis Cluster; takes precedence over REDIS_URL. */
  REDIS_CLUSTER_NODES?: string[];
  /** With REDIS_CLUSTER_NODES: pub/sub over sharded channels (SPUBLISH/SSUBSCRIBE, Redis 7+); false for classic PUBLISH on older clusters. @default true */
  REDIS_SHARDED_PUBSUB: boolean;
  /**
   * Put before every Redis key and pub/sub channel Parley uses, so deployments sharing one Redis
   * (staging and production, two tenants) do not see each other's presence, rate limits or events.
   * Give each deployment its own (`prod:`, `staging:`); every instance of one deployment the same. @default '' (none)
   */
  REDIS_KEY_PREFIX: string;
  /**
   * Seconds a Redis command may wait for its answer before it fails as if Redis were away (a Redis
   * stopped or cut off without a reset holds commands rather than failing them). Not for the
   * subscribing connection, whose commands wait for a Redis that comes back. @default 2
   */
  REDIS_COMMAND_TIMEOUT: number;
  /** @default 'info' ('debug' in development) */
  LOG_LEVEL: LogLevel;
  /**
   * Seconds from SIGTERM/SIGINT to the process's end, whatever is left: connections drained,
   * operations finished, logs flushed. When it runs out the process exits 1; if even that is held
   * (a log pipe nobody reads, a stuck log worker, an exit handler), a watchdog outside the process
   * kills it (SIGKILL) at this deadline. @default 10
   */
  SHUTDOWN_TIMEOUT: number;
  /**
   * Seconds between the signal and closing anything: /readyz answers 503 while everything else is
   * served as before, so a load balancer that polls it stops sending first. Part of
   * SHUTDOWN_TIMEOUT, and shorter than it. @default 0
   */
  SHUTDOWN_DELAY: number;
  /** When set, `/metrics` answers only requests with `Authorization: Bearer <METRICS_TOKEN>` (16 characters or more); others get 401. */
  METRICS_TOKEN?: string;
  /** When set, `/metrics` is served on this port only (and HOST), not on PORT: keep it off the public listener. */
  METRICS_PORT?: number;
  /** Pretty, human logs instead of JSON lines. @default true in development when stdout is a terminal (JSON whenever it is not: a pipe, a file, a container's log) */
  LOG_PRETTY: boolean;
  /** Seconds without activity after which the sweep marks a user OFFLINE. @default 300 */
  PRESENCE_TIMEOUT: number;
  /** Seconds between a user's last socket closing and OFFLINE (absorbs reloads). @default 5 */
  PRESENCE_GRACE: number;
  /** node-cron expression of the presence sweep. @default '* * * * *' */
  PRESENCE_SWEEP_CRON: string;
  /** Seconds between lastSeenAt writes for a user who stays online. @default 60 */
  PRESENCE_PERSIST_INTERVAL: number;
  /**
   * Who sees a user's presence: `everyone`, or only their `contacts` (friends, direct-message peers,
   * members of shared groups and projects of at most PRESENCE_GROUP_MAX members; never the lobby).
   * In `contacts` mode each transition travels on its user's own channel to the instances where a
   * contact is connected. @default 'everyone'
   */
  PRESENCE_VISIBILITY: 'everyone' | 'contacts';
  /** In `contacts` mode, the largest group or project whose members are each other's contacts. @default 100 */
  PRESENCE_GROUP_MAX: number;
  /** Token lifetime in seconds. @default 2592000 (30 days) */
  TOKEN_TTL: number;
  /**
   * The cost of new password hashes: `owasp` (argon2id, 19 MiB, 2 passes: ~25 ms of a core each),
   * or `minimal` (1 MiB, 1 pass), which only NODE_ENV=test accepts: test suites sign thousands of
   * users up, as Rails' and Django's test settings make bcrypt and their hashers cheap. @default 'owasp'
   */
  PASSWORD_HASH_COST: 'owasp' | 'minimal';
  /** Largest decoded attachment in bytes. @default 5242880 (5 MiB) */
  ATTACHMENT_MAX_BYTES: number;
  /** Decoded attachment bytes one response may carry through `Attachment.base64` (the rest: PAYLOAD_TOO_LARGE); at least ATTACHMENT_MAX_BYTES. @default 10485760 (10 MiB), or ATTACHMENT_MAX_BYTES if larger */
  ATTACHMENT_MAX_BYTES_PER_RESPONSE: number;
  /**
   * Bytes of request bodies larger than a token-less one (sends with a file) that one instance
   * takes in over HTTP and SSE at once, counted at their Content-Length, four at most per user:
   * the rest wait their turn before being read (up to 30 s, then SERVICE_UNAVAILABLE). A 5 MiB
   * file's send held 15-20 MB of memory while it ran: 100 at once held 1.7 GB (an outside probe).
   * @default 16 bodies of the largest size (about 107 MiB with ATTACHMENT_MAX_BYTES at 5 MiB)
   */
  ATTACHMENT_BYTES_IN_FLIGHT: number | undefined;
  /** Seconds a signed attachment link (`Attachment.url`) stays valid. @default 300 (5 minutes) */
  ATTACHMENT_URL_TTL: number;
  /**
   * Key of the HMAC that signs attachment links (16 characters or more). Every instance must use
   * the same one. @default a random secret made once and kept in the database, shared by every
   * instance that uses it
   */
  ATTACHMENT_URL_SECRET?: string;
  /**
   * The public address of the server (`https://chat.example.com`), for absolute links
   * (attachment URLs). @default the request's own: its Host header (X-Forwarded-Host and
   * X-Forwarded-Proto with TRUST_PROXY)
   */
  PUBLIC_URL?: string;
  /** Allowed browser origins, '*' for any. @default ['*'] */
  CORS_ORIGINS: string[];
  /** Introspection in production. @default false (true outside production) */
  ENABLE_INTROSPECTION: boolean;
  /** GraphiQL at /graphiql. @default true outside production */
  ENABLE_GRAPHIQL: boolean;
  /** Wrong passwords (login, deleteAccount) allowed per account from one client address per 15 minutes: the owner's typos, or a guesser at one address. @default 10 */
  LOGIN_MAX_FAILURES_PER_USER_IP: number;
  /** Wrong passwords allowed per account from all addresses together per 15 minutes; kept far above the per-address count so a stranger cannot lock the owner out. @default 100 */
  LOGIN_MAX_FAILURES_PER_USER: number;
  /** Wrong passwords allowed per client address per 15 minutes, whichever accounts (one address can be many people behind a NAT). @default 200 */
  LOGIN_MAX_FAILURES_PER_IP: number;
  /** Trust X-Forwarded-For for the client address (its last entry, which the proxy appended), and X-Forwarded-Proto/-Host for the public address (links). @default false */
  TRUST_PROXY: boolean;
  /** Bytes a socket or SSE stream may have waiting to be sent before it is closed (a socket with 1013): a client that stopped reading. @default 4194304 */
  WS_MAX_BUFFERED_BYTES: number;
  /** Length of a GraphQL document (the query text, not the request body: attachments travel in variables), checked before parsing; longer: PAYLOAD_TOO_LARGE. @default 102400 (100 KiB) */
  GRAPHQL_MAX_DOCUMENT_BYTES: number;
  /** Deepest selection a document may nest (fragments flattened). @default 8 */
  GRAPHQL_MAX_DEPTH: number;
  /** Aliases per document. @default 15 */
  GRAPHQL_MAX_ALIASES: number;
  /** Lexical tokens per document; parsing stops beyond it. @default 1000 */
  GRAPHQL_MAX_TOKENS: number;
  /** Directives per document. @default 10 */
  GRAPHQL_MAX_DIRECTIVES: number;
  /** Estimated cost per document, of its shape (graphql-armor's estimate: objects 2, scalars 1, times 1.5 per level; page sizes count in GRAPHQL_MAX_ITEMS). @default 5000 */
  GRAPHQL_MAX_COST: number;
  /** Items a document's pages may hold: each page's size (a variable counts 100) times the pages it is in, summed. @default 20000 */
  GRAPHQL_MAX_ITEMS: number;
  /** Seconds a client has to send a request's headers; a slower one is cut (Node's 60 s let a few thousand idle sockets hold a server). @default 10 */
  HTTP_HEADERS_TIMEOUT: number;
  /** Seconds a client has to send a whole request, body included (the largest attachment fits many times over). @default 60 */
  HTTP_REQUEST_TIMEOUT: number;
  /** Seconds an idle kept-alive HTTP connection stays open: longer than a load balancer's idle timeout (60 s on most) and than clients reuse one. @default 72 */
  HTTP_KEEPALIVE_TIMEOUT: number;
  /** Seconds a new socket has to send connection_init before it is closed with 4408. @default 3 */
  WS_CONNECTION_INIT_TIMEOUT: number;
  /** Operations running at once on one socket; the next is answered with an error. @default 50 */
  WS_MAX_SUBSCRIPTIONS: number;
  /** Sockets and SSE streams one user may hold open on one instance, together; the next socket is closed with 1013 "Too many connections" (clients retry later), the next stream gets 429. @default 20 */
  WS_MAX_SOCKETS_PER_USER: number;
  /** Sockets one client address may hold that are not acknowledged yet (no valid connection_init); the next upgrade is refused with HTTP 429. @default 20 */
  WS_MAX_PENDING_PER_IP: number;
  /** Seconds between keep-alive pings; a socket that misses the pong for as long is cut. 0 turns pings off. @default 12 */
  WS_KEEPALIVE: number;
  /**
   * Seconds a socket or SSE stream may take to open its session (its memberships read, its
   * channels subscribed in Redis) before it is told to try again: 1013 for a socket, 503 with
   * Retry-After for a stream. @default 10
   */
  REALTIME_OPEN_TIMEOUT: number;
  /** sendMessage calls per user (count/duration): well above a person typing, far below a script. @default 300/10s */
  RATE_LIMIT_SEND_MESSAGE: RateSpec;
  /** Signups per client address (argon2 already makes each one cost). @default 1000/1h */
  RATE_LIMIT_SIGNUP: RateSpec;
  /** Login attempts per client address, successful or not (failures have their own limits above). @default 300/5m */
  RATE_LIMIT_LOGIN: RateSpec;
  /** Seconds after the last setTyping before typing lapses (others get typing: false). @default 6 */
  TYPING_TIMEOUT: number;
  /** At most one typing: true per user and conversation reaches others this often, in seconds. @default 2 */
  TYPING_THROTTLE: number;
  /**
   * Seconds a message that arrived before an earlier one of its conversation waits for it (see
   * InOrder); then it goes, and the gap is given up. Only a lost publish makes one wait that long;
   * shorter, a process stalled that long (GC, a starved CPU) delivers out of order. At most 60 s. @default 0.5
   */
  MESSAGE_ORDER_HOLD: number;
  /**
   * Members up to which a message writes every member's sidebar sort key (one row each), so a
   * sidebar page is read by index; a larger conversation writes O(1) rows per message and is
   * ordered through its head when a page is read. @default 32
   */
  SIDEBAR_FANOUT_MAX: number;
  /** editMessage and deleteMessage calls per user. @default 60/1m */
  RATE_LIMIT_EDIT: RateSpec;
  /** addReaction and removeReaction calls per user. @default 120/1m */
  RATE_LIMIT_REACTION: RateSpec;
  /** searchMessages calls per user: a search reads far more than a page of history. @default 60/1m */
  RATE_LIMIT_SEARCH: RateSpec;
  /**
   * MiB of attachment data (`Attachment.base64`) per user per window, on one instance: a page of
   * large files costs the server its base64 and its memory (14 MB a response, 6.5 CPU-seconds for
   * forty at once: an outside probe), where `url` costs nothing. At least ATTACHMENT_MAX_BYTES. @default 100/10s
   */
  RATE_LIMIT_ATTACHMENT_DATA: RateSpec;
  /** setTyping calls per user on one instance, all conversations together (a client refreshes about every 2 s while typing). @default 30/10s */
  RATE_LIMIT_TYPING: RateSpec;
  /** createGroup calls per user: every public group is announced to everyone. @default 20/1h */
  RATE_LIMIT_CREATE_GROUP: RateSpec;
  /** joinGroup and leaveGroup calls per user: each is announced to every member of the group. @default 60/1h */
  RATE_LIMIT_GROUP_MEMBERSHIP: RateSpec;
  /** sendFriendRequest calls per user. @default 50/1h */
  RATE_LIMIT_FRIEND_REQUEST: RateSpec;
  /** Group invitations one user may send. @default 60/1h */
  RATE_LIMIT_GROUP_INVITE: RateSpec;
  /** Message reports one user may make. @default 30/1h */
  RATE_LIMIT_REPORT: RateSpec;
  /** createProject calls per user. @default 60/1h */
  RATE_LIMIT_CREATE_PROJECT: RateSpec;
  /** Participants one user may add to projects (each told, with every member, in their inbox and by webhook). @default 200/1h */
  RATE_LIMIT_PROJECT_ADD: RateSpec;
  /** How long after a declined friend request its sender may not ask the same user again (RATE_LIMITED); 0 turns it off. @default 1d */
  FRIEND_REQUEST_COOLDOWN: number;
  /**
   * Messages one WebSocket may send; beyond it operations get RATE_LIMITED, at twice it the socket is closed with 1008.
   * Also the SSE subscription requests one user may make (beyond it: 429). @default 500/10s
   */
  RATE_LIMIT_WS_MESSAGES: RateSpec;
  /**
   * Where offline notifications are POSTed (signed JSON events: see docs/API.md). Unset: none are
   * made, and nothing of it runs. @default undefined
   */
  WEBHOOK_URL?: string;
  /** Key of the HMAC-SHA256 in each event's `Parley-Signature` header (16 characters or more); required with WEBHOOK_URL. */
  WEBHOOK_SECRET?: string;
  /** Messages to one offline user in one conversation within this many seconds of the first go as one event with a count. @default 10 */
  WEBHOOK_COALESCE: number;
  /** An event the receiver has not accepted (2xx) this long after it was made is dropped (counted in /metrics). @default 86400 (24 h) */
  WEBHOOK_MAX_AGE: number;
  /**
   * Usernames (comma-separated, case ignored) who are ADMIN of the lobby, which has no owner: they
   * may remove, ban and unban members there and set its slow mode. Applied at start and at signup.
   * @default [] (no lobby admins)
   */
  LOBBY_ADMINS: string[];
  /**
   * Usernames (comma-separated, case ignored) of the instance's moderators: they receive and
   * resolve reports of direct and project messages (a group's reports go to its owner and admins).
   * @default [] (no moderators: such reports are kept, seen by no one until one is named)
   */
  MODERATORS: string[];
}

/** A rate: `points` actions per `duration` seconds, written `30/10s`. */
export interface RateSpec {
  points: number;
  duration: number;
}

export class ConfigError extends Error {
  constructor(readonly variable: string, problem: string) {
    super(`Invalid configuration: ${variable} ${problem}`);
    this.name = 'ConfigError';
  }
}

type Source = Record<string, string | undefined>;

const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];
const DURATION_UNITS: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400 };

function read(src: Source, name: string): string | undefined {
  const v = src[name];
  return v === undefined || v.trim() === '' ? undefined : v.trim();
}

function int(src: Source, name: string, def: number, min: number, max: number): number {
  const raw = read(src, name);
  if (raw === undefined) return def;
  if (!/^-?\d+$/.test(raw)) throw new ConfigError(name, `must be an integer, got '${raw}'`);
  const n = Number(raw);
  if (n < min || n > max) throw new ConfigError(name, `must be between ${min} and ${max}, got ${n}`);
  return n;
}

/** Seconds; accepts a bare number of seconds or a number with ms/s/m/h/d. */
/**
 * The longest a timer waits: Node fires a longer setTimeout after 1 ms. A duration that arms one is
 * at most this (TYPING_TIMEOUT=25d ended typing at once and then re-armed every millisecond, a
 * SHUTDOWN_TIMEOUT of 25d cut the shutdown short: an outside probe); those that never arm a timer
 * (expiry times, ages, cooldowns) say so with UNTIMED.
 */
const TIMER_MAX_SECONDS = Math.floor((2 ** 31 - 1) / 1000);
const UNTIMED = 100 * 365 * 86400;

function duration(src: Source, name: string, def: number, minSeconds = 0.001, maxSeconds = TIMER_MAX_SECONDS): number {
  const raw = read(src, name);
  if (raw === undefined) return def;
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(raw);
  if (!m) throw new ConfigError(name, `must be a duration such as 300, 30s, 5m or 1d, got '${raw}'`);
  const seconds = Number(m[1]) * DURATION_UNITS[m[2] ?? 's'];
  if (seconds < minSeconds) throw new ConfigError(name, `must be at least ${minSeconds}s, got '${raw}'`);
  if (seconds > maxSeconds) throw new ConfigError(name, `must be at most ${maxSeconds}s, got '${raw}'`);
  return seconds;
}

function bool(src: Source, name: string, def: boolean): boolean {
  const raw = read(src, name)?.toLowerCase();
  if (raw === undefined) return def;
  if (['1', 'true', 'yes', 'on'].includes(raw)) return true;
  if (['0', 'false', 'no', 'off'].includes(raw)) return false;
  throw new ConfigError(name, `must be true or false, got '${raw}'`);
}

/** `count/duration`, e.g. `30/10s` or `20/1h`. */
function rate(src: Source, name: string, def: RateSpec): RateSpec {
  const raw = read(src, name);
  if (raw === undefined) return def;
  const m = /^(\d+)\s*\/\s*(\S+)$/.exec(raw);
  if (!m || Number(m[1]) < 1) throw new ConfigError(name, `must be count/duration such as 30/10s, got '${raw}'`);
  return { points: Number(m[1]), duration: duration({ [name]: m[2] }, name, 0, 1) };
}

/**
 * CORS_ORIGINS as browsers send Origin: `scheme://host[:port]` lower-cased, without a default port
 * or a trailing slash (written `https://App.Example:443/`, it matched no request), an app's own
 * scheme too (`capacitor://localhost`). A path, query or credentials, or no host (`localhost:3000`
 * reads as a scheme), stop the start; so does `null`, the origin of any sandboxed page.
 */
function corsOrigins(src: Source): string[] {
  const entries = (read(src, 'CORS_ORIGINS') ?? '*').split(',').map((s) => s.trim().replace(/\/+$/, '')).filter(Boolean);
  return entries.map((entry) => {
    if (entry === '*') return entry;
    let parsed: URL | undefined;
    try {
      parsed = new URL(entry);
    } catch {
      parsed = undefined;
    }
    if (!parsed || !parsed.host || !['', '/'].includes(parsed.pathname) || parsed.search || parsed.hash || parsed.username || parsed.password) {
      throw new ConfigError('CORS_ORIGINS', `'${entry}' is not an origin (scheme://host[:port], no path), or '*'`);
    }
    // URL.origin drops the default port; an app's scheme has none (its origin reads 'null').
    const web = parsed.protocol === 'http:' || parsed.protocol === 'https:';
    return (web ? parsed.origin : `${parsed.protocol}//${parsed.host}`).toLowerCase();
  });
}

function url(src: Source, name: string, protocols: string[]): string | undefined {
  const raw = read(src, name);
  if (raw === undefined) return undefined;
  let parsed: URL;
  try {
    parsed = new URL(raw);
  } catch {
    throw new ConfigError(name, `must be a URL (${protocols.join(' or ')}//…)`);
  }
  if (!protocols.includes(parsed.protocol)) {
    throw new ConfigError(name, `must use ${protocols.join(' or ')}, got '${parsed.protocol}'`);
  }
  return raw;
}

/** A comma-separated list of usernames, lower-cased (usernames are unique regardless of case). */
function usernames(src: Source, name: string): string[] {
  const list = (read(src, name) ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  const bad = list.find((u) => !/^[A-Za-z0-9_.-]{3,32}$/.test(u));
  if (bad !== undefined) throw new ConfigError(name, `must be comma-separated usernames (letters, digits, _ . -; 3 to 32 each), got '${bad}'`);
  return [...new Set(list.map((u) => u.toLowerCase()))];
}

/** A secret: at least `min` characters (taken as they are, not trimmed). */
function secret(src: Source, name: string, min: number): string | undefined {
  const raw = src[name];
  if (raw === undefined || raw === '') return undefined;
  // Characters as a person counts them (code points), and spaces at its ends not among them: 16
  // spaces, or 8 emoji, passed (an outside probe).
  if ([...raw.trim()].length < min) throw new ConfigError(name, `must be at least ${min} characters long, spaces at its ends not counted`);
  return raw;
}

/**
 * A bearer token a scraper can send as it is: printable ASCII, no spaces. A header's value reaches
 * the server as Latin-1 with the spaces at its ends cut, so a token of emoji, or one with a space at
 * an end, started the server and matched no request: /metrics locked for good (an outside probe).
 */
function metricsToken(src: Source): string | undefined {
  const token = secret(src, 'METRICS_TOKEN', 16);
  if (token !== undefined && !/^[\x21-\x7e]+$/.test(token)) throw new ConfigError('METRICS_TOKEN', 'must be printable ASCII characters without spaces (a scraper sends it in an Authorization header)');
  return token;
}

/** Printable characters without spaces: it is put before keys and channel names as it is. */
function redisPrefix(src: Source): string {
  const raw = read(src, 'REDIS_KEY_PREFIX') ?? '';
  if (!/^[\x21-\x7e]{0,64}$/.test(raw)) throw new ConfigError('REDIS_KEY_PREFIX', `must be up to 64 printable characters without spaces, got '${raw}'`);
  // Channel names begin with 'parley.': a prefix one of them could begin with would be taken for one already applied.
  if (raw && ('parley.'.startsWith(raw) || raw.startsWith('parley.'))) throw new ConfigError('REDIS_KEY_PREFIX', `must not be the beginning of Parley's own names ('parley.'), got '${raw}': end it with ':' (parley:)`);
  return raw;
}

/**
 * For entry points: the settings, or undefined once the one-line reason a setting is bad has
 * been written to stderr (the caller then exits 1). Anything else still throws.
 */
export function loadEnvOrReport(src: Source = process.env): Env | undefined {
  try {
    return loadEnv(src);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    process.stderr.write(`${e.message}\n`);
    return undefined;
  }
}

/**
 * Reads and validates the environment.
 * @param terminal whether stdout is a terminal (only then are logs pretty by default).
 * @throws ConfigError naming the first bad variable; the entry point prints its one line and exits 1.
 */
export function loadEnv(src: Source = process.env, terminal: boolean = !!process.stdout.isTTY): Env {
  const nodeEnv = (read(src, 'NODE_ENV') ?? 'development') as NodeEnv;
  if (!['development', 'production', 'test'].includes(nodeEnv)) {
    throw new ConfigError('NODE_ENV', `must be development, production or test, got '${nodeEnv}'`);
  }
  const prod = nodeEnv === 'production';
  const logLevel = (read(src, 'LOG_LEVEL') ?? (nodeEnv === 'development' ? 'debug' : 'info')) as LogLevel;
  if (!LOG_LEVELS.includes(logLevel)) throw new ConfigError('LOG_LEVEL', `must be one of ${LOG_LEVELS.join(', ')}`);
  const cluster = read(src, 'REDIS_CLUSTER_NODES');
  const clusterNodes = cluster?.split(',').map((s) => s.trim()).filter(Boolean);
  if (clusterNodes?.some((n) => !/^[\w.-]+:\d+$/.test(n))) {
    throw new ConfigError('REDIS_CLUSTER_NODES', 'must be a comma-separated list of host:port');
  }
  const attachmentMax = int(src, 'ATTACHMENT_MAX_BYTES', 5 * 1024 * 1024, 1, 100 * 1024 * 1024);
  const MIB = 1024 * 1024;
  const attachmentRate = rate(src, 'RATE_LIMIT_ATTACHMENT_DATA', { points: 100, duration: 10 });
  // A file as large as a send takes must fit in a window, or its bytes could never be read.
  if (attachmentRate.points * MIB < attachmentMax) throw new ConfigError('RATE_LIMIT_ATTACHMENT_DATA', `must allow at least ATTACHMENT_MAX_BYTES (${Math.ceil(attachmentMax / MIB)} MiB) a window`);
  const perResponse = int(src, 'ATTACHMENT_MAX_BYTES_PER_RESPONSE', Math.max(10 * 1024 * 1024, attachmentMax), 1, 1024 * 1024 * 1024);
  // Below one attachment, the largest allowed file could be sent but never read back as base64.
  if (perResponse < attachmentMax) throw new ConfigError('ATTACHMENT_MAX_BYTES_PER_RESPONSE', `must be at least ATTACHMENT_MAX_BYTES (${attachmentMax}), got ${perResponse}`);
  const shutdownTimeout = duration(src, 'SHUTDOWN_TIMEOUT', 10, 1);
  const shutdownDelay = duration(src, 'SHUTDOWN_DELAY', 0, 0);
  if (shutdownDelay >= shutdownTimeout) throw new ConfigError('SHUTDOWN_DELAY', `must be shorter than SHUTDOWN_TIMEOUT (${shutdownTimeout}s), got ${shutdownDelay}s`);
  const webhookUrl = url(src, 'WEBHOOK_URL', ['http:', 'https:']);
  // Its user and password go as Basic authorization (notification.webhook.ts): they must decode.
  if (webhookUrl) {
    const { username, password } = new URL(webhookUrl);
    try {
      decodeURIComponent(username);
      decodeURIComponent(password);
    } catch {
      throw new ConfigError('WEBHOOK_URL', 'has a user or password with a malformed %-escape');
    }
  }
  const webhookSecret = secret(src, 'WEBHOOK_SECRET', 16);
  // Unsigned events could not be told from forged ones: a receiver must be able to check every one.
  if (webhookUrl && !webhookSecret) throw new ConfigError('WEBHOOK_SECRET', 'must be set (16 characters or more) when WEBHOOK_URL is');
  const cron = read(src, 'PRESENCE_SWEEP_CRON') ?? '* * * * *';
  if (!validateCron(cron)) throw new ConfigError('PRESENCE_SWEEP_CRON', `must be a cron expression, got '${cron}'`);

  const hashCost = (read(src, 'PASSWORD_HASH_COST') ?? 'owasp').toLowerCase();
  if (hashCost !== 'owasp' && hashCost !== 'minimal') throw new ConfigError('PASSWORD_HASH_COST', `must be owasp or minimal, got '${hashCost}'`);
  // A cheap hash outside tests would leave stolen hashes easy to crack.
  if (hashCost === 'minimal' && nodeEnv !== 'test') throw new ConfigError('PASSWORD_HASH_COST', `can be minimal only with NODE_ENV=test, not ${nodeEnv}`);

  const presenceVisibility = (read(src, 'PRESENCE_VISIBILITY') ?? 'everyone').toLowerCase();
  if (presenceVisibility !== 'everyone' && presenceVisibility !== 'contacts') {
    throw new ConfigError('PRESENCE_VISIBILITY', `must be everyone or contacts, got '${presenceVisibility}'`);
  }

  return {
    NODE_ENV: nodeEnv,
    PORT: int(src, 'PORT', 4000, 0, 65535),
    HOST: read(src, 'HOST') ?? '0.0.0.0',
    DATABASE_URL: url(src, 'DATABASE_URL', ['postgres:', 'postgresql:']),
    EMBEDDED_PG_DIR: read(src, 'EMBEDDED_PG_DIR') ?? '.data/postgres',
    EMBEDDED_PG_PORT: int(src, 'EMBEDDED_PG_PORT', 54329, 1, 65535),
    DB_POOL_MAX: int(src, 'DB_POOL_MAX', 10, 1, 500),
    DB_STATEMENT_TIMEOUT: duration(src, 'DB_STATEMENT_TIMEOUT', 15, 0.1, 3600),
    REDIS_URL: url(src, 'REDIS_URL', ['redis:', 'rediss:']),
    REDIS_CLUSTER_NODES: clusterNodes?.length ? clusterNodes : undefined,
    REDIS_SHARDED_PUBSUB: bool(src, 'REDIS_SHARDED_PUBSUB', true),
    REDIS_KEY_PREFIX: redisPrefix(src),
    REDIS_COMMAND_TIMEOUT: duration(src, 'REDIS_COMMAND_TIMEOUT', 2, 0.05, 60),
    SHUTDOWN_TIMEOUT: shutdownTimeout,
    SHUTDOWN_DELAY: shutdownDelay,
    METRICS_TOKEN: metricsToken(src),
    METRICS_PORT: read(src, 'METRICS_PORT') === undefined ? undefined : int(src, 'METRICS_PORT', 0, 0, 65535),
    LOG_LEVEL: logLevel,
    LOG_PRETTY: bool(src, 'LOG_PRETTY', nodeEnv === 'development' && terminal),
    PRESENCE_TIMEOUT: duration(src, 'PRESENCE_TIMEOUT', 300, 1),
    PRESENCE_GRACE: duration(src, 'PRESENCE_GRACE', 5, 0),
    PRESENCE_SWEEP_CRON: cron,
    PRESENCE_PERSIST_INTERVAL: duration(src, 'PRESENCE_PERSIST_INTERVAL', 60, 1),
    PRESENCE_VISIBILITY: presenceVisibility,
    PRESENCE_GROUP_MAX: int(src, 'PRESENCE_GROUP_MAX', 100, 2, 100_000),
    TOKEN_TTL: duration(src, 'TOKEN_TTL', 30 * 86400, 1, UNTIMED),
    PASSWORD_HASH_COST: hashCost,
    ATTACHMENT_MAX_BYTES: attachmentMax,
    ATTACHMENT_MAX_BYTES_PER_RESPONSE: perResponse,
    ATTACHMENT_BYTES_IN_FLIGHT: src.ATTACHMENT_BYTES_IN_FLIGHT ? int(src, 'ATTACHMENT_BYTES_IN_FLIGHT', 0, MIB, 64 * 1024 * MIB) : undefined,
    ATTACHMENT_URL_TTL: duration(src, 'ATTACHMENT_URL_TTL', 300, 1, UNTIMED),
    ATTACHMENT_URL_SECRET: secret(src, 'ATTACHMENT_URL_SECRET', 16),
    PUBLIC_URL: url(src, 'PUBLIC_URL', ['http:', 'https:'])?.replace(/\/+$/, ''),
    CORS_ORIGINS: corsOrigins(src),
    ENABLE_INTROSPECTION: bool(src, 'ENABLE_INTROSPECTION', !prod),
    ENABLE_GRAPHIQL: bool(src, 'ENABLE_GRAPHIQL', !prod),
    LOGIN_MAX_FAILURES_PER_USER_IP: int(src, 'LOGIN_MAX_FAILURES_PER_USER_IP', 10, 1, 1_000_000),
    LOGIN_MAX_FAILURES_PER_USER: int(src, 'LOGIN_MAX_FAILURES_PER_USER', 100, 1, 1_000_000),
    LOGIN_MAX_FAILURES_PER_IP: int(src, 'LOGIN_MAX_FAILURES_PER_IP', 200, 1, 1_000_000),
    TRUST_PROXY: bool(src, 'TRUST_PROXY', false),
    WS_MAX_BUFFERED_BYTES: int(src, 'WS_MAX_BUFFERED_BYTES', 4 * 1024 * 1024, 16 * 1024, 1024 * 1024 * 1024),
    GRAPHQL_MAX_DOCUMENT_BYTES: int(src, 'GRAPHQL_MAX_DOCUMENT_BYTES', 100 * 1024, 1024, 64 * 1024 * 1024),
    GRAPHQL_MAX_DEPTH: int(src, 'GRAPHQL_MAX_DEPTH', 8, 1, 1000),
    GRAPHQL_MAX_ALIASES: int(src, 'GRAPHQL_MAX_ALIASES', 15, 0, 100_000),
    GRAPHQL_MAX_TOKENS: int(src, 'GRAPHQL_MAX_TOKENS', 1000, 10, 1_000_000),
    GRAPHQL_MAX_DIRECTIVES: int(src, 'GRAPHQL_MAX_DIRECTIVES', 10, 0, 100_000),
    GRAPHQL_MAX_COST: int(src, 'GRAPHQL_MAX_COST', 5000, 1, 100_000_000),
    GRAPHQL_MAX_ITEMS: int(src, 'GRAPHQL_MAX_ITEMS', 20_000, 1, 100_000_000),
    HTTP_HEADERS_TIMEOUT: duration(src, 'HTTP_HEADERS_TIMEOUT', 10, 0.05),
    HTTP_REQUEST_TIMEOUT: duration(src, 'HTTP_REQUEST_TIMEOUT', 60, 0.05),
    HTTP_KEEPALIVE_TIMEOUT: duration(src, 'HTTP_KEEPALIVE_TIMEOUT', 72, 0.05),
    WS_CONNECTION_INIT_TIMEOUT: duration(src, 'WS_CONNECTION_INIT_TIMEOUT', 3, 0.05),
    WS_MAX_SUBSCRIPTIONS: int(src, 'WS_MAX_SUBSCRIPTIONS', 50, 1, 100_000),
    WS_MAX_SOCKETS_PER_USER: int(src, 'WS_MAX_SOCKETS_PER_USER', 20, 1, 100_000),
    WS_MAX_PENDING_PER_IP: int(src, 'WS_MAX_PENDING_PER_IP', 20, 1, 1_000_000),
    WS_KEEPALIVE: duration(src, 'WS_KEEPALIVE', 12, 0),
    REALTIME_OPEN_TIMEOUT: duration(src, 'REALTIME_OPEN_TIMEOUT', 10, 0.1, 300),
    RATE_LIMIT_SEND_MESSAGE: rate(src, 'RATE_LIMIT_SEND_MESSAGE', { points: 300, duration: 10 }),
    RATE_LIMIT_SIGNUP: rate(src, 'RATE_LIMIT_SIGNUP', { points: 1000, duration: 3600 }),
    RATE_LIMIT_LOGIN: rate(src, 'RATE_LIMIT_LOGIN', { points: 300, duration: 300 }),
    TYPING_TIMEOUT: duration(src, 'TYPING_TIMEOUT', 6, 0.05),
    TYPING_THROTTLE: duration(src, 'TYPING_THROTTLE', 2, 0),
    MESSAGE_ORDER_HOLD: duration(src, 'MESSAGE_ORDER_HOLD', 0.5, 0.01, 60),
    SIDEBAR_FANOUT_MAX: int(src, 'SIDEBAR_FANOUT_MAX', 32, 2, 10_000),
    RATE_LIMIT_EDIT: rate(src, 'RATE_LIMIT_EDIT', { points: 60, duration: 60 }),
    RATE_LIMIT_REACTION: rate(src, 'RATE_LIMIT_REACTION', { points: 120, duration: 60 }),
    RATE_LIMIT_SEARCH: rate(src, 'RATE_LIMIT_SEARCH', { points: 60, duration: 60 }),
    RATE_LIMIT_ATTACHMENT_DATA: attachmentRate,
    RATE_LIMIT_TYPING: rate(src, 'RATE_LIMIT_TYPING', { points: 30, duration: 10 }),
    RATE_LIMIT_CREATE_GROUP: rate(src, 'RATE_LIMIT_CREATE_GROUP', { points: 20, duration: 3600 }),
    RATE_LIMIT_GROUP_MEMBERSHIP: rate(src, 'RATE_LIMIT_GROUP_MEMBERSHIP', { points: 60, duration: 3600 }),
    RATE_LIMIT_FRIEND_REQUEST: rate(src, 'RATE_LIMIT_FRIEND_REQUEST', { points: 50, duration: 3600 }),
    RATE_LIMIT_GROUP_INVITE: rate(src, 'RATE_LIMIT_GROUP_INVITE', { points: 60, duration: 3600 }),
    RATE_LIMIT_REPORT: rate(src, 'RATE_LIMIT_REPORT', { points: 30, duration: 3600 }),
    RATE_LIMIT_CREATE_PROJECT: rate(src, 'RATE_LIMIT_CREATE_PROJECT', { points: 60, duration: 3600 }),
    RATE_LIMIT_PROJECT_ADD: rate(src, 'RATE_LIMIT_PROJECT_ADD', { points: 200, duration: 3600 }),
    FRIEND_REQUEST_COOLDOWN: duration(src, 'FRIEND_REQUEST_COOLDOWN', 86400, 0, UNTIMED),
    RATE_LIMIT_WS_MESSAGES: rate(src, 'RATE_LIMIT_WS_MESSAGES', { points: 500, duration: 10 }),
    WEBHOOK_URL: webhookUrl,
    WEBHOOK_SECRET: webhookSecret,
    WEBHOOK_COALESCE: duration(src, 'WEBHOOK_COALESCE', 10, 0),
    WEBHOOK_MAX_AGE: duration(src, 'WEBHOOK_MAX_AGE', 86400, 1, UNTIMED),
    LOBBY_ADMINS: usernames(src, 'LOBBY_ADMINS'),
    MODERATORS: usernames(src, 'MODERATORS'),
  };
}
