// Runs the graphql-http server audit suite against a running server.
// Usage: node audit.mjs <url> [bearer-token]
// Prints one line per audit and a summary `audit: N passed, M failed`
// (MUST and SHOULD audits count; MAY audits are informational).
// Exits 1 when a MUST or SHOULD audit fails.
import { serverAudits } from 'graphql-http';

const [url, token] = process.argv.slice(2);
if (!url) {
  console.error('usage: node audit.mjs <url> [bearer-token]');
  process.exit(2);
}

const fetchFn = (input, init = {}) => {
  const headers = new Headers(init.headers || {});
  if (token) headers.set('authorization', `Bearer ${token}`);
  return fetch(input, { ...init, headers });
};

let passed = 0;
let failed = 0;
for (const audit of serverAudits({ url, fetchFn })) {
  const result = await audit.fn();
  const level = audit.name.split(' ')[0];
  if (result.status === 'ok') {
    passed++;
    console.log(`PASS ${audit.id} ${audit.name}`);
  } else if (level === 'MAY') {
    console.log(`INFO ${audit.id} ${audit.name}: ${result.reason}`);
  } else {
    failed++;
    console.log(`FAIL ${audit.id} ${audit.name}: ${result.reason}`);
  }
}
console.log(`audit: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
