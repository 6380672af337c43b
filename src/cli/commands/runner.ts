import { ConfigError } from '../../core/errors.js';
import { defineCommand } from '../command.js';

export default defineCommand({
  name: 'runner',
  summary: 'Run a runner: claim sessions from the API and run them in Chromium',
  usage: 'runner',
  async run() {
    throw new ConfigError('the runner is not built into this version yet');
  },
});
