import { decodeCursor, encodeCursor } from '../src/shared/graphql/connection';

describe('encodeCursor', () => {
  it('should write the same cursor for a plain key as for any other, and read back what it wrote', () => {
    const json = (k: string, id: string) => Buffer.from(`c1:${JSON.stringify([k, id])}`).toString('base64url');
    const id = '0b7a3c1e-6f2d-4c1a-9e8b-2f5d7c9a1b3e';
    const keys = ['2026-11-23T21:15:04.553Z', 'g:0b7a3c1e-6f2d-4c1a-9e8b-2f5d7c9a1b3e', 'ada_lovelace', '', 'with "quotes"', 'back\\slash', 'ñandú ☃ 😀', 'tab\there', 'a/b'];
    for (const k of keys) {
      expect(encodeCursor({ k, id })).toBe(json(k, id));
      // A control character is never in a key this server issues, and never read back.
      if (!/[\u0000-\u001f]/.test(k)) expect(decodeCursor(encodeCursor({ k, id }), 'after')).toEqual({ k, id });
    }
  });
});
