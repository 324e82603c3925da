/** Small DOM helpers: element building, dates, sizes, avatars and toasts. */

export const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;

type Child = Node | string | null | undefined | false;

export function el<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, string | boolean | undefined> = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === false || v === undefined) continue;
    node.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children) if (c !== null && c !== undefined && c !== false) node.append(c);
  return node;
}

/** replaceChildren that skips the parts left out (null, false). */
export function fill(node: HTMLElement, ...children: Child[]): void {
  node.replaceChildren(...children.filter((c): c is Node | string => c !== null && c !== undefined && c !== false));
}

/**
 * `fill` for a pane that live events re-render: what the user has typed in its fields (by id) and
 * which field had the focus survive. The details pane is drawn again on every project action and
 * group event; without this, an event arriving while someone typed a username wiped it, and the
 * form was submitted empty.
 */
export function refill(node: HTMLElement, ...children: Child[]): void {
  const typed = new Map<string, string>();
  for (const input of node.querySelectorAll<HTMLInputElement>('input[id]')) if (input.value !== input.defaultValue) typed.set(input.id, input.value);
  const active = document.activeElement;
  const focused = active instanceof HTMLInputElement && active.id && node.contains(active) ? active.id : null;
  fill(node, ...children);
  for (const [id, value] of typed) {
    const input = node.querySelector<HTMLInputElement>(`#${CSS.escape(id)}`);
    if (input) input.value = value;
  }
  if (focused) node.querySelector<HTMLInputElement>(`#${CSS.escape(focused)}`)?.focus();
}

/** A button that runs `action` and shows its failure in `errorTarget` (or a toast). */
export function button(label: string, action: () => unknown, attrs: Record<string, string> = {}): HTMLButtonElement {
  const b = el('button', { type: 'button', ...attrs }, label);
  b.addEventListener('click', () => {
    b.disabled = true;
    Promise.resolve()
      .then(action)
      .catch((e) => toast(errorText(e), 'error'))
      .finally(() => (b.disabled = false));
  });
  return b;
}

export const errorText = (e: unknown) => (e instanceof Error ? e.message : String(e));

const sameDay = (a: Date, b: Date) => a.getFullYear() === b.getFullYear() && a.getMonth() === b.getMonth() && a.getDate() === b.getDate();

/** "Today", "Yesterday", "Mon 12 Nov" or "12 Nov 2025" for older years. */
export function dayLabel(d: Date, now = new Date()): string {
  if (sameDay(d, now)) return 'Today';
  const yesterday = new Date(now);
  yesterday.setDate(now.getDate() - 1);
  if (sameDay(d, yesterday)) return 'Yesterday';
  return d.toLocaleDateString(undefined, d.getFullYear() === now.getFullYear() ? { weekday: 'short', day: 'numeric', month: 'short' } : { day: 'numeric', month: 'short', year: 'numeric' });
}

export const clock = (d: Date) => d.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });

/** A <time> with the date when it isn't today, and the full date and time on hover. */
export function timeEl(iso: string, withDay = true): HTMLTimeElement {
  const d = new Date(iso);
  const text = withDay && dayLabel(d) !== 'Today' ? `${dayLabel(d)}, ${clock(d)}` : clock(d);
  return el('time', { datetime: iso, title: d.toLocaleString() }, text);
}

export function sizeText(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

/** A round avatar with the first letter and a colour of its own per name. */
export function avatar(name: string, status?: string): HTMLSpanElement {
  let h = 0;
  for (const c of name) h = (h * 31 + c.charCodeAt(0)) % 360;
  const a = el('span', { class: 'avatar', 'aria-hidden': 'true', style: `--hue:${h}` }, (name.replace(/^@/, '')[0] ?? '?').toUpperCase());
  if (status) a.append(el('span', { class: `presence ${status.toLowerCase()}` }));
  return a;
}

/** Emoji fonts are not everywhere (headless Chromium has none): icons are drawn. */
export function lockIcon(): HTMLSpanElement {
  const s = el('span', { class: 'icon-svg' });
  s.innerHTML = '<svg viewBox="0 0 24 24" width="14" height="14" fill="none" stroke="currentColor" stroke-width="2.2" stroke-linecap="round"><rect x="5" y="11" width="14" height="10" rx="2"/><path d="M8 11V8a4 4 0 0 1 8 0v3"/></svg>';
  return s;
}

export function badge(n: number): HTMLSpanElement | null {
  return n > 0 ? el('span', { class: 'badge' }, n > 99 ? '99+' : String(n)) : null;
}

/** A short notice in the corner; `onClick` makes it actionable. */
export function toast(text: string, kind: 'info' | 'error' = 'info', onClick?: () => void): void {
  const t = el('div', { class: `toast ${kind}`, role: kind === 'error' ? 'alert' : 'status' }, text);
  if (onClick) {
    t.classList.add('clickable');
    t.addEventListener('click', () => {
      onClick();
      t.remove();
    });
  }
  const box = $('toasts');
  box.append(t);
  // A burst of events keeps the three newest in sight.
  while (box.children.length > 3) box.firstElementChild!.remove();
  setTimeout(() => t.remove(), kind === 'error' ? 6000 : 4500);
}

export function formValue(id: string): string {
  return (document.getElementById(id) as HTMLInputElement).value.trim();
}

/** The two reactions the demo offers, drawn (see lockIcon); the emoji itself is what the API stores. */
const REACTION_PATHS: Record<string, string> = {
  '👍': '<path d="M14 9V5a3 3 0 0 0-3-3l-4 9v11h11.3a2 2 0 0 0 2-1.7l1.4-9a2 2 0 0 0-2-2.3zM7 22H4a2 2 0 0 1-2-2v-7a2 2 0 0 1 2-2h3"/>',
  '❤️': '<path d="M20.8 4.6a5.5 5.5 0 0 0-7.8 0L12 5.7l-1-1.1a5.5 5.5 0 0 0-7.8 7.8l1 1.1L12 21l7.8-7.5 1-1.1a5.5 5.5 0 0 0 0-7.8z"/>',
};
export const REACTIONS = Object.keys(REACTION_PATHS);

export function reactionIcon(emoji: string): HTMLSpanElement {
  if (!REACTION_PATHS[emoji]) return el('span', {}, emoji);
  const s = el('span', { class: 'icon-svg', 'aria-hidden': 'true' });
  s.innerHTML = `<svg viewBox="0 0 24 24" width="13" height="13" fill="none" stroke="currentColor" stroke-width="2.2" stroke-linecap="round" stroke-linejoin="round">${REACTION_PATHS[emoji]}</svg>`;
  return s;
}

/**
 * A fresh clientMessageId. `crypto.randomUUID` exists only in a secure context (https, localhost):
 * opened from a phone at the host's LAN address over http, it was undefined and nothing could be
 * sent (an outside probe). 122 random bits either way.
 */
export function newKey(): string {
  if (typeof crypto.randomUUID === 'function') return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
