import { isUtf8 } from 'node:buffer';
import { BadUserInputError, PayloadTooLargeError } from '../../shared/errors';
import { isSafeName } from '../../shared/validation';

export interface CheckedFile {
  fileName: string;
  mimeType: string;
  data: Buffer;
}

const TYPES: Record<string, { mime: string; matches: (b: Buffer) => boolean }> = {
  png: { mime: 'image/png', matches: (b) => starts(b, [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]) },
  jpg: { mime: 'image/jpeg', matches: (b) => starts(b, [0xff, 0xd8, 0xff]) },
  jpeg: { mime: 'image/jpeg', matches: (b) => starts(b, [0xff, 0xd8, 0xff]) },
  gif: { mime: 'image/gif', matches: (b) => b.subarray(0, 6).toString('latin1') === 'GIF87a' || b.subarray(0, 6).toString('latin1') === 'GIF89a' },
  pdf: { mime: 'application/pdf', matches: (b) => b.subarray(0, 5).toString('latin1') === '%PDF-' },
  // Word 97-2003 documents are OLE2 compound files.
  doc: { mime: 'application/msword', matches: (b) => starts(b, [0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1]) },
  // UTF-8 by the check below: the download says so in its Content-Type (attachment.route.ts).
  txt: { mime: 'text/plain', matches: isPlainText },
};

export const ALLOWED_EXTENSIONS = Object.keys(TYPES);

function starts(b: Buffer, sig: number[]): boolean {
  return b.length >= sig.length && sig.every((v, i) => b[i] === v);
}

/** Control bytes a text file may not hold: all of C0 but tab, line feed, form feed and carriage return, and DEL. */
const BINARY_BYTES = [...Array(32).keys()].filter((c) => ![0x09, 0x0a, 0x0c, 0x0d].includes(c)).concat(0x7f);

/** UTF-8 text without NUL or other binary control bytes. Native scans: a byte-by-byte loop holds the event loop on a large file. */
function isPlainText(b: Buffer): boolean {
  return !BINARY_BYTES.some((c) => b.includes(c)) && isUtf8(b);
}

/**
 * Strict base64 (standard alphabet, padded), decoded. Linear and native: Node's decoder skips
 * what it doesn't know (and reads base64url), so the bytes are re-encoded and must give back the
 * exact text. A regular expression with a repeated group overflows the stack on a large input and
 * holds the event loop on a smaller one.
 */
function decodeStrictBase64(b64: string): Buffer | null {
  if (b64.length % 4 !== 0) return null;
  const data = Buffer.from(b64, 'base64');
  return data.toString('base64') === b64 ? data : null;
}

/**
 * Checks an upload: a plain file name whose last extension is allowed, strict base64, a size
 * within `maxBytes`, and bytes whose signature matches the extension.
 * @throws BadUserInputError or PayloadTooLargeError naming the field; nothing is stored then.
 */
export function checkAttachment(input: { fileName: string; base64: string }, maxBytes: number): CheckedFile {
  const name = typeof input.fileName === 'string' ? input.fileName.trim() : '';
  // 255 characters as code points, as the column counts them (an emoji is one).
  if (!name || [...name].length > 255 || !isSafeName(name) || /[/\\:*?"<>|]/.test(name) || name.startsWith('.') || name.includes('..')) {
    throw new BadUserInputError('The file name must be a plain name of up to 255 characters such as photo.png (no paths, none of : * ? " < > |, no control, invisible or direction-changing characters).', 'attachment.fileName');
  }
  const ext = name.includes('.') ? name.slice(name.lastIndexOf('.') + 1).toLowerCase() : '';
  const type = TYPES[ext];
  if (!type) throw new BadUserInputError(`Allowed file types: ${ALLOWED_EXTENSIONS.join(', ')}.`, 'attachment.fileName');
  const b64 = typeof input.base64 === 'string' ? input.base64 : '';
  // Checked on the encoded length first, so a huge string is refused before it is decoded.
  if (Math.floor((b64.length * 3) / 4) - (b64.endsWith('==') ? 2 : b64.endsWith('=') ? 1 : 0) > maxBytes) {
    throw new PayloadTooLargeError(`Attachments are limited to ${maxBytes} bytes.`, 'attachment.base64');
  }
  const data = decodeStrictBase64(b64);
  if (!data) throw new BadUserInputError('The attachment is not valid base64.', 'attachment.base64');
  if (!data.length) throw new BadUserInputError('The attachment is empty.', 'attachment.base64');
  if (!type.matches(data)) throw new BadUserInputError(`The file's content is not a .${ext} file.`, 'attachment.base64');
  return { fileName: name, mimeType: type.mime, data };
}
