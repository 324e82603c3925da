// Each failure of a jest --json report, briefly: CI's log keeps only its tail, and a long run's
// own summary can fall out of it.
const report = JSON.parse(require('fs').readFileSync(process.argv[2], 'utf8'));
const brief = (text, lines) => text.replace(/\x1b\[[0-9;]*m/g, '').split('\n').slice(0, lines).join('\n');
for (const suite of report.testResults) {
  const failed = suite.assertionResults.filter((a) => a.status === 'failed');
  if (suite.status === 'failed' && failed.length === 0) console.log(`FAILED SUITE ${suite.name}\n${brief(suite.message ?? '', 30)}`);
  for (const a of failed) console.log(`FAILED ${a.fullName}\n${brief(a.failureMessages.join('\n'), 40)}`);
}
