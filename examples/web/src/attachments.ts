/**
 * Attachments: reading a picked file for upload, and showing one in a message (a preview for
 * images, a download chip for the rest).
 *
 * `Attachment.url` is used as given. A signed URL (one with a query string) works on its own in
 * <img src> and <a href>; a plain one needs the bearer token, so the bytes are fetched with it
 * into a blob URL. A signed link lives a few minutes (its `expires`): an image that fails to load
 * and a link clicked after that fall back to the same fetch, on the URL without its signature.
 */
import { fetchWithToken } from './api';
import { el, sizeText } from './ui';

export interface AttachmentView {
  id: string;
  fileName: string;
  mimeType: string;
  size: number;
  url: string;
}

export interface PickedFile {
  fileName: string;
  base64: string;
  size: number;
  previewUrl?: string;
}

export function readFile(file: File): Promise<PickedFile> {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onerror = () => reject(reader.error ?? new Error('Could not read the file'));
    reader.onload = () => {
      const dataUrl = String(reader.result);
      resolve({
        fileName: file.name,
        base64: dataUrl.slice(dataUrl.indexOf(',') + 1),
        size: file.size,
        previewUrl: file.type.startsWith('image/') ? URL.createObjectURL(file) : undefined,
      });
    };
    reader.readAsDataURL(file);
  });
}

const absolute = (url: string) => new URL(url, location.href);
const isSigned = (url: string) => absolute(url).search.length > 1;
/** A signed link past its `expires` (seconds since the epoch); false when it doesn't say. */
const expired = (url: string) => {
  const at = Number(absolute(url).searchParams.get('expires'));
  return at > 0 && at * 1000 <= Date.now();
};

/** Blob URLs by attachment id: a re-rendered message reuses the bytes already fetched. */
const blobs = new Map<string, Promise<string>>();

function blobUrl(a: AttachmentView): Promise<string> {
  let p = blobs.get(a.id);
  if (!p) {
    // The header-authenticated form is the URL without its signature.
    const u = absolute(a.url);
    u.search = '';
    p = fetchWithToken(u.href).then((b) => URL.createObjectURL(b));
    p.catch(() => blobs.delete(a.id));
    blobs.set(a.id, p);
  }
  return p;
}

const isImage = (a: AttachmentView) => /^image\/(png|jpeg|gif)/.test(a.mimeType);

export function attachmentEl(a: AttachmentView): HTMLElement {
  if (isImage(a)) {
    const img = el('img', { alt: a.fileName, loading: 'lazy', 'data-attachment': a.id });
    const link = el('a', { class: 'preview', title: `${a.fileName} · ${sizeText(a.size)}`, target: '_blank', rel: 'noopener' }, img);
    const viaToken = () =>
      blobUrl(a).then(
        (u) => {
          img.src = u;
          link.href = u;
        },
        () => link.replaceWith(fileChip(a)),
      );
    if (isSigned(a.url)) {
      img.src = link.href = a.url;
      img.addEventListener('error', () => void viaToken(), { once: true });
    } else void viaToken();
    openWithToken(link, a, false);
    return link;
  }
  return fileChip(a);
}

/** A click on a link that can't work on its own (unsigned, or signed and expired) goes through the token. */
function openWithToken(link: HTMLAnchorElement, a: AttachmentView, download: boolean): void {
  link.addEventListener('click', async (ev) => {
    if (link.href.startsWith('blob:') || (isSigned(link.href) && !expired(link.href))) return;
    ev.preventDefault();
    const u = await blobUrl(a);
    const target = el('a', download ? { href: u, download: a.fileName } : { href: u, target: '_blank', rel: 'noopener' });
    document.body.append(target);
    target.click();
    target.remove();
  });
}

function fileChip(a: AttachmentView): HTMLElement {
  const ext = a.fileName.includes('.') ? a.fileName.slice(a.fileName.lastIndexOf('.') + 1).toUpperCase() : 'FILE';
  const link = el(
    'a',
    { class: 'file', href: isSigned(a.url) ? a.url : '#', download: a.fileName, 'data-attachment': a.id },
    el('span', { class: 'file-icon' }, ext.slice(0, 4)),
    el('span', { class: 'file-name' }, a.fileName),
    el('span', { class: 'file-size' }, sizeText(a.size)),
  );
  openWithToken(link, a, true);
  return link;
}
