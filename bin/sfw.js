#!/usr/bin/env node
// Node.js 22.18+ (22 and 24 are the lines tested); older ones are past end of life and not supported.
const [major = 0, minor = 0] = process.versions.node.split('.').map(Number);
if (major < 22 || (major === 22 && minor < 18))
  process.stderr.write(
    `sfw: Node.js ${process.version} is not supported; use Node.js 22 (22.18 or later) or 24.\n`,
  );

const { main } = await import('../dist/cli/main.js');
const code = await main(process.argv.slice(2));
process.exit(code);
