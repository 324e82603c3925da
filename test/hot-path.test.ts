import { readFileSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';

/**
 * The files every send, read and delivery runs through. In V8 (Node 20) an object literal that defines properties
 * after a spread (`{ ...row, pos }`) goes to the runtime for each of them: 1 µs for one property
 * after a 13-field payload, 12 µs for seven after 24 fields, against ~0.1 µs for Object.assign
 * onto the object; five such literals were ~15% of a send's CPU in bench:http. A spread alone, or
 * last, is fast and allowed.
 */
const HOT = [
  'src/modules/message/message.service.ts',
  'src/modules/message/message.repository.ts',
  'src/modules/message/message.mapper.ts',
  'src/modules/conversation/conversation.typing.ts',
  'src/modules/conversation/conversation.events.ts',
  'src/modules/conversation/conversation.mapper.ts',
  'src/modules/conversation/conversation.service.ts',
  'src/shared/pubsub/pubsub.ts',
  'src/shared/pubsub/hub.ts',
  'src/shared/pubsub/order.ts',
  'src/shared/batcher.ts',
  'src/shared/sql.ts',
  'src/graphql/fast-path.ts',
  'src/graphql/fanout.ts',
  'src/graphql/frames.ts',
  'src/graphql/ws.ts',
];

/** Object literals in `source` with a property defined after a spread, as `line: text`. */
export function spreadsThenDefines(file: string, source: string): string[] {
  const sf = ts.createSourceFile(file, source, ts.ScriptTarget.ES2022, true, ts.ScriptKind.TS);
  const found: string[] = [];
  const visit = (node: ts.Node): void => {
    if (ts.isObjectLiteralExpression(node)) {
      const first = node.properties.findIndex((p) => ts.isSpreadAssignment(p));
      if (first >= 0 && node.properties.slice(first + 1).some((p) => !ts.isSpreadAssignment(p))) {
        const { line } = sf.getLineAndCharacterOfPosition(node.getStart(sf));
        found.push(`${file}:${line + 1}: ${node.getText(sf).replace(/\s+/g, ' ').slice(0, 80)}`);
      }
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return found;
}

describe('the send path', () => {
  it('should define no property after a spread in an object literal', () => {
    const root = path.resolve(__dirname, '..');
    const found = HOT.flatMap((f) => spreadsThenDefines(f, readFileSync(path.join(root, f), 'utf8')));
    expect(found).toEqual([]);
  });

  it('should tell such a literal from those that are fast', () => {
    const src = 'const a = { ...x, pos: 1 }; const b = { ...x }; const c = { pos: 1, ...x }; const d = Object.assign(f(), { pos: 1 }); const e = { ...x, ...y };';
    expect(spreadsThenDefines('t.ts', src)).toEqual(['t.ts:1: { ...x, pos: 1 }']);
  });
});
