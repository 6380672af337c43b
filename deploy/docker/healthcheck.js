// Container health check for the session-runner image (Docker HEALTHCHECK).
// Finds which sfw role this container runs, then:
//   api / up → GET http://127.0.0.1:$PORT/healthz must answer 200;
//   runner   → the runner process must be alive and the API it claims from ($API_BASE_URL/healthz) reachable.
// Exit 0 = healthy, 1 = unhealthy (Docker's contract). No dependencies: runs with the image's node.
import { readFileSync, readdirSync } from 'node:fs';

const TIMEOUT_MS = 4000;

function sfwRole() {
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    let args;
    try {
      args = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    } catch {
      continue;
    }
    const i = args.findIndex((a) => a === 'sfw' || a.endsWith('/sfw') || a.endsWith('/sfw.js'));
    if (i >= 0 && args[i + 1] && !args[i + 1].startsWith('-')) return args[i + 1];
  }
  return undefined;
}

async function ok(url) {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(TIMEOUT_MS) });
    return res.status === 200;
  } catch {
    return false;
  }
}

// SFW_HEALTHCHECK_ROLE skips the process scan (a container whose command is not `sfw <role>`).
const role = process.env.SFW_HEALTHCHECK_ROLE ?? sfwRole();
let healthy = false;
let reason = '';
if (role === 'api' || role === 'up') {
  const url = `http://127.0.0.1:${process.env.PORT ?? '3000'}/healthz`;
  healthy = await ok(url);
  reason = `${url} did not answer 200`;
} else if (role === 'runner') {
  const base = (process.env.API_BASE_URL ?? 'http://127.0.0.1:3000').replace(/\/+$/, '');
  healthy = await ok(`${base}/healthz`);
  reason = `runner cannot reach the API at ${base}/healthz`;
} else {
  reason = 'no sfw process found';
}
if (!healthy) console.error(`unhealthy: ${reason}`);
process.exitCode = healthy ? 0 : 1;
