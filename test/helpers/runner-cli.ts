import { main } from '../../src/cli/main.js';

/** The `sfw` binary run from source (node --import tsx), so process tests need no build step. */
process.exit(await main(process.argv.slice(2)));
