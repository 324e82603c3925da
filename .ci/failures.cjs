// Each failure of a jest --json report, briefly: CI's log keeps only its tail, and a long run's
// own summary can fall out of it.
const report = JSON.parse(require('fs').readFileSync(process.argv[2], 'utf8'));
const brief = (text, lines) => text.replace(/\x1b\[[0-9;]*m/g, '').split('\n').slice(0, lines).join('\n');
for (const suite of report.testResults) {
  const failed = suite.assertionResults.filter((a) => a.status === 'failed');
  if (suite.status === 'failed' && failed.length === 0) console.log(`FAILED SUITE ${suite.name}\n${brief(suite.message ?? '', 30)}`);
  for (const a of failed) console.log(`FAILED ${a.fullName}\n${brief(a.failureMessages.join('\n'), 40)}`);
}
// The slowest suites, so that a run grown slower shows where (each suite's own wall time; they run
// side by side, so these add up to more than the step).
const slowest = report.testResults
  .map((s) => ({ name: require('path').basename(s.name), ms: s.endTime - s.startTime }))
  .sort((a, b) => b.ms - a.ms)
  .slice(0, 12);
console.log(`slowest suites: ${slowest.map((s) => `${s.name} ${(s.ms / 1000).toFixed(0)} s`).join(', ')}`);
