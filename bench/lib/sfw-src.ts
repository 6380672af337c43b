import { main } from '../../src/cli/main.js';

/** `sfw` from source through tsx (BENCH_SFW=src), for runs without a fresh build. */
process.exit(await main(process.argv.slice(2)));
