import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { PersistentVolumeClaim } from 'kubernetes-models/v1/PersistentVolumeClaim';
import { Secret } from 'kubernetes-models/v1/Secret';
import { Service } from 'kubernetes-models/v1/Service';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { ScaledObject } from '@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject';
import { TriggerAuthentication } from '@kubernetes-models/keda/keda.sh/v1alpha1/TriggerAuthentication';
import { freshDb } from '../helpers/db.js';
import type { Db } from '../../src/store/db.js';

// deploy/k8s is rendered with `kubectl kustomize` (offline) and every object is validated against the
// Kubernetes (and KEDA) OpenAPI schemas compiled into kubernetes-models.

const execFileP = promisify(execFile);
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SHUTDOWN_TIMEOUT_MS = 300_000;

/** The Kubernetes Deployment from the horizontal scaling guide, verbatim. */
const GUIDE_DEPLOYMENT = `
apiVersion: apps/v1
kind: Deployment
metadata:
  name: session-runner
spec:
  replicas: 3  # Scale this
  selector:
    matchLabels:
      app: session-runner
  template:
    metadata:
      labels:
        app: session-runner
    spec:
      containers:
      - name: runner
        image: session-runner:latest
        env:
        - name: API_BASE_URL
          valueFrom:
            secretKeyRef:
              name: runner-secrets
              key: api-url
        - name: RUNNER_ID
          valueFrom:
            fieldRef:
              fieldPath: metadata.name
        - name: MAX_CONCURRENCY
          value: "3"
        resources:
          limits:
            memory: "2Gi"
            cpu: "2"
          requests:
            memory: "1Gi"
            cpu: "1"
`;

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string> };
  [key: string]: unknown;
}

type Validatable = new (data: never) => { validate(): void };
const MODELS: Record<string, Validatable> = {
  'v1/ConfigMap': ConfigMap,
  'v1/Secret': Secret,
  'v1/Service': Service,
  'v1/PersistentVolumeClaim': PersistentVolumeClaim,
  'apps/v1/Deployment': Deployment,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'keda.sh/v1alpha1/ScaledObject': ScaledObject,
  'keda.sh/v1alpha1/TriggerAuthentication': TriggerAuthentication,
};

function validate(obj: K8sObject): void {
  const Model = MODELS[`${obj.apiVersion}/${obj.kind}`];
  if (!Model) throw new Error(`no schema for ${obj.apiVersion} ${obj.kind}`);
  new Model(obj as never).validate();
}

// Loose shapes for reading the rendered objects in assertions.
interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: {
    secretKeyRef?: { name: string; key: string };
    fieldRef?: { fieldPath: string };
  };
}
interface Probe {
  exec?: { command: string[] };
  httpGet?: { path: string; port: string | number };
}
interface Container {
  name: string;
  image: string;
  args?: string[];
  env?: EnvVar[];
  envFrom?: { configMapRef?: { name: string }; secretRef?: { name: string } }[];
  ports?: { name?: string; containerPort: number }[];
  resources?: unknown;
  lifecycle?: { preStop?: { exec?: { command: string[] } } };
  readinessProbe?: Probe;
  livenessProbe?: Probe;
  volumeMounts?: { name: string; mountPath: string }[];
}
interface DeploymentShape extends K8sObject {
  spec: {
    replicas: number;
    selector: { matchLabels: Record<string, string> };
    template: {
      metadata: { labels: Record<string, string> };
      spec: {
        terminationGracePeriodSeconds?: number;
        securityContext?: { runAsNonRoot?: boolean; runAsUser?: number };
        containers: Container[];
        volumes?: {
          name: string;
          emptyDir?: { medium?: string };
          persistentVolumeClaim?: { claimName: string };
        }[];
      };
    };
  };
}

let objects: K8sObject[];
const find = <T extends K8sObject>(kind: string, name: string): T => {
  const o = objects.find((x) => x.kind === kind && x.metadata.name === name);
  if (!o) throw new Error(`${kind}/${name} not rendered`);
  return o as T;
};

beforeAll(async () => {
  const { stdout } = await execFileP('kubectl', ['kustomize', 'deploy/k8s'], { cwd: ROOT, timeout: 30_000 });
  objects = parseAllDocuments(stdout).map((d) => d.toJS() as K8sObject);
});

describe('deploy/k8s renders with kustomize and validates against the Kubernetes schemas', () => {
  it('renders every resource the deployment needs', () => {
    expect(objects.map((o) => `${o.kind}/${o.metadata.name}`).sort()).toEqual(
      [
        'ConfigMap/sfw-api-config',
        'ConfigMap/sfw-runner-config',
        'Deployment/session-runner',
        'Deployment/sfw-api',
        'PersistentVolumeClaim/sfw-artifacts',
        'PodDisruptionBudget/session-runner',
        'PodDisruptionBudget/sfw-api',
        'ScaledObject/session-runner',
        'Secret/keda-postgres',
        'Secret/runner-secrets',
        'Secret/sfw-api-secrets',
        'Service/sfw-api',
        'TriggerAuthentication/keda-postgres',
      ].sort(),
    );
  });

  it('every object passes its schema', () => {
    for (const obj of objects) expect(() => validate(obj), `${obj.kind}/${obj.metadata.name}`).not.toThrow();
  });

  it('the schema check is live: it rejects broken objects', () => {
    const runner = structuredClone(find<DeploymentShape>('Deployment', 'session-runner'));
    (runner.spec as Record<string, unknown>).replicas = '3';
    expect(() => validate(runner)).toThrow(/replicas must be integer/);
    const so = structuredClone(
      find<K8sObject & { spec: { triggers: { metadata: Record<string, unknown> }[] } }>(
        'ScaledObject',
        'session-runner',
      ),
    );
    so.spec.triggers[0]!.metadata.targetQueryValue = 3;
    expect(() => validate(so)).toThrow(/must be string/);
  });
});

describe('session-runner Deployment', () => {
  let runner: DeploymentShape;
  let container: Container;
  beforeAll(() => {
    runner = find<DeploymentShape>('Deployment', 'session-runner');
    container = runner.spec.template.spec.containers[0]!;
  });

  it("contains the guide's Deployment exactly: name, replicas, labels, image, env, requests and limits", () => {
    const guide = parseYaml(GUIDE_DEPLOYMENT) as DeploymentShape;
    const g = guide.spec.template.spec.containers[0]!;
    expect(runner.apiVersion).toBe(guide.apiVersion);
    expect(runner.kind).toBe(guide.kind);
    expect(runner.metadata.name).toBe('session-runner');
    expect(runner.spec.replicas).toBe(3);
    expect(runner.spec.selector).toEqual(guide.spec.selector);
    expect(runner.spec.template.metadata.labels).toEqual({ app: 'session-runner' });
    expect(runner.spec.template.spec.containers).toHaveLength(1);
    expect(container.name).toBe(g.name);
    expect(container.image).toBe(g.image);
    // The guide's three variables come first, unchanged; additions follow.
    expect(container.env!.slice(0, 3)).toEqual(g.env);
    expect(container.env!.find((e) => e.name === 'MAX_CONCURRENCY')?.value).toBe('3');
    expect(container.resources).toEqual(g.resources);
  });

  it('has the runner token from runner-secrets and no database credentials', () => {
    const token = container.env!.find((e) => e.name === 'RUNNER_TOKEN');
    expect(token?.valueFrom?.secretKeyRef).toEqual({ name: 'runner-secrets', key: 'runner-token' });
    expect(container.env!.some((e) => e.name === 'DATABASE_URL')).toBe(false);
    expect(container.envFrom).toEqual([{ configMapRef: { name: 'sfw-runner-config' } }]);
    // Runners talk to the API only; its URL secret points at the API Service.
    const secret = find<K8sObject & { stringData: Record<string, string> }>('Secret', 'runner-secrets');
    const svc = find<K8sObject & { spec: { ports: { port: number }[] } }>('Service', 'sfw-api');
    expect(new URL(secret.stringData['api-url']!).host).toBe(`sfw-api:${svc.spec.ports[0]!.port}`);
  });

  it('drains safely: grace period covers the longest session plus the hand-back, preStop does not signal', () => {
    const env = Object.fromEntries(container.env!.map((e) => [e.name, e.value]));
    const shutdownMs = Number(env.SHUTDOWN_TIMEOUT_MS);
    expect(shutdownMs).toBe(SHUTDOWN_TIMEOUT_MS);
    const preStop = container.lifecycle!.preStop!.exec!.command;
    const sleep = Number(/sleep (\d+)/.exec(preStop.join(' '))?.[1] ?? 0);
    const grace = runner.spec.template.spec.terminationGracePeriodSeconds!;
    // The grace period runs from the start of preStop: preStop + drain + the runner's 15 s for aborted
    // sessions to settle + time to hand them back and report the final status.
    expect(grace).toBeGreaterThanOrEqual(sleep + shutdownMs / 1000 + 15 + 10);
    // A preStop that sent SIGTERM would make the kubelet's SIGTERM a second signal, which aborts sessions.
    expect(preStop.join(' ')).not.toMatch(/\bkill\b|TERM/);
  });

  it('turns unready while draining: the preStop marker fails the readiness probe', () => {
    const preStop = container.lifecycle!.preStop!.exec!.command.join(' ');
    const marker = /touch (\S+?);/.exec(preStop)?.[1];
    expect(marker).toBe('/tmp/sfw-draining');
    const readiness = container.readinessProbe!.exec!.command.join(' ');
    expect(readiness).toContain(`test ! -e ${marker}`);
    // /tmp is a writable volume so the marker can be written with a non-root user.
    expect(container.volumeMounts).toEqual(expect.arrayContaining([{ name: 'tmp', mountPath: '/tmp' }]));
  });

  it('mounts /dev/shm as memory, runs as non-root, and has a disruption budget', () => {
    const dshm = container.volumeMounts!.find((m) => m.mountPath === '/dev/shm');
    const vol = runner.spec.template.spec.volumes!.find((v) => v.name === dshm?.name);
    expect(vol?.emptyDir?.medium).toBe('Memory');
    expect(runner.spec.template.spec.securityContext?.runAsNonRoot).toBe(true);
    const pdb = find<K8sObject & { spec: { maxUnavailable: number; selector: unknown } }>(
      'PodDisruptionBudget',
      'session-runner',
    );
    expect(pdb.spec.selector).toEqual(runner.spec.selector);
    expect(pdb.spec.maxUnavailable).toBe(1);
  });
});

describe('API Deployment and Service', () => {
  it('runs `sfw api` behind tini with readiness on /readyz, liveness on /healthz, secrets from Secrets', () => {
    const api = find<DeploymentShape>('Deployment', 'sfw-api');
    const c = api.spec.template.spec.containers[0]!;
    expect(c.image).toBe('session-runner:latest');
    expect(c.args).toEqual(['sfw', 'api']);
    expect(c).not.toHaveProperty('command'); // keeps the image's ENTRYPOINT (tini)
    expect(c.readinessProbe?.httpGet).toEqual({ path: '/readyz', port: 'http' });
    expect(c.livenessProbe?.httpGet).toEqual({ path: '/healthz', port: 'http' });
    const env = new Map(c.env!.map((e) => [e.name, e]));
    expect(env.get('HOST')?.value).toBe('0.0.0.0');
    expect(env.get('DATABASE_URL')?.valueFrom?.secretKeyRef?.name).toBe('sfw-api-secrets');
    expect(env.get('API_TOKEN')?.valueFrom?.secretKeyRef?.name).toBe('sfw-api-secrets');
    expect(env.get('RUNNER_TOKEN')?.valueFrom?.secretKeyRef).toEqual({
      name: 'runner-secrets',
      key: 'runner-token',
    });
    const port = c.ports!.find((p) => p.name === 'http')!.containerPort;
    expect(env.get('PORT')?.value).toBe(String(port));

    const svc = find<K8sObject & { spec: { selector: unknown; ports: { targetPort: string }[] } }>(
      'Service',
      'sfw-api',
    );
    expect(svc.spec.selector).toEqual(api.spec.selector.matchLabels);
    expect(svc.spec.ports[0]!.targetPort).toBe('http');
    const claim = api.spec.template.spec.volumes!.find((v) => v.persistentVolumeClaim)?.persistentVolumeClaim;
    expect(claim?.claimName).toBe('sfw-artifacts');
  });
});

interface ScaledObjectShape extends K8sObject {
  spec: {
    scaleTargetRef: { name: string };
    minReplicaCount: number;
    maxReplicaCount: number;
    advanced: {
      horizontalPodAutoscalerConfig: {
        behavior: {
          scaleDown: {
            stabilizationWindowSeconds: number;
            policies: { type: string; value: number; periodSeconds: number }[];
          };
        };
      };
    };
    triggers: {
      type: string;
      authenticationRef: { name: string };
      metadata: { query: string; targetQueryValue: string };
    }[];
  };
}

describe('KEDA ScaledObject', () => {
  let so: ScaledObjectShape;
  let db: Db;
  beforeAll(async () => {
    so = find<ScaledObjectShape>('ScaledObject', 'session-runner');
    db = (await freshDb('deploy_k8s')).db;
  });
  afterAll(async () => {
    await db.end();
  });

  it('scales session-runner on work ÷ MAX_CONCURRENCY and scales down one runner at a time, slowly', () => {
    const runner = find<DeploymentShape>('Deployment', 'session-runner');
    const maxConcurrency = runner.spec.template.spec.containers[0]!.env!.find(
      (e) => e.name === 'MAX_CONCURRENCY',
    )!.value;
    expect(so.spec.scaleTargetRef.name).toBe(runner.metadata.name);
    const trigger = so.spec.triggers[0]!;
    expect(trigger.type).toBe('postgresql');
    expect(trigger.metadata.targetQueryValue).toBe(maxConcurrency);
    expect(trigger.authenticationRef.name).toBe('keda-postgres');
    find('TriggerAuthentication', 'keda-postgres');
    expect(so.spec.minReplicaCount).toBeGreaterThanOrEqual(1);
    const down = so.spec.advanced.horizontalPodAutoscalerConfig.behavior.scaleDown;
    expect(down.stabilizationWindowSeconds).toBeGreaterThanOrEqual(60);
    expect(down.policies).toEqual([{ type: 'Pods', value: 1, periodSeconds: 60 }]);
  });

  it('its query counts running and ready sessions on the real schema, from the hot set, never the history', async () => {
    const query = so.spec.triggers[0]!.metadata.query;
    // 2 running, 3 ready, 1 scheduled for later, and a long finished history.
    await db.query(`
      INSERT INTO sessions (id, type, status, run_at, claimed_by)
      SELECT gen_random_uuid(), 'k', s, now() + (CASE WHEN later THEN interval '1 hour' ELSE interval '0' END),
             CASE WHEN s = 'running' THEN 'r1' END
      FROM (VALUES ('running', false), ('running', false), ('queued', false), ('queued', false),
                   ('queued', false), ('queued', true)) AS v(s, later)`);
    await db.query(`
      INSERT INTO sessions (id, type, status, finished_at)
      SELECT gen_random_uuid(), 'k', (ARRAY['succeeded','failed','error','cancelled'])[1 + g % 4], now()
      FROM generate_series(1, 20000) AS g`);
    await db.query('ANALYZE sessions');
    const { rows } = await db.query<Record<string, string>>(query);
    expect(rows).toHaveLength(1);
    expect(Number(Object.values(rows[0]!)[0])).toBe(5);

    const plan = await db.query<{ 'QUERY PLAN': string }>(`EXPLAIN ${query}`);
    const text = plan.rows.map((r) => r['QUERY PLAN']).join('\n');
    // Both counts read the hot set's tables (their own size: the work there is), never `sessions`.
    expect(text).not.toMatch(/on sessions\b/);
    expect(text).toMatch(/session_running/);
    expect(text).toMatch(/session_ready/);
  });
});
