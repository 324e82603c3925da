import { auditServer, type AuditResult } from 'graphql-http';
import { createTestServer } from './helpers/server';

/** Prints what the audit warns about, so the report can list it; errors fail the test. */
function summary(results: AuditResult[], status: AuditResult['status']) {
  return results.filter((r) => r.status === status).map((r) => `${r.id} ${r.name}`);
}

describe('graphql-http audit', () => {
  it('should pass every mandatory check of the GraphQL-over-HTTP spec (no error results)', async () => {
    const s = await createTestServer();
    const results = await auditServer({ url: s.url });
    const warnings = summary(results, 'warn');
    if (warnings.length) process.stdout.write(`graphql-http audit warnings (${warnings.length}):\n  ${warnings.join('\n  ')}\n`);
    const errors = results.filter((r) => r.status === 'error').map((r) => `${r.id} ${r.name}: ${r.status === 'error' ? r.reason : ''}`);
    expect(errors).toEqual([]);
    expect(summary(results, 'ok').length).toBeGreaterThan(20);
  });
});
