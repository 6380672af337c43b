import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/core/errors.js';
import {
  TargetNotAllowedError,
  checkAddress,
  checkHost,
  checkTarget,
  createTargetCheck,
  parseTargetPolicy,
} from '../../src/protocol/targets.js';

const open = parseTargetPolicy({});
const ok = (policy: ReturnType<typeof parseTargetPolicy>, url: string) => checkTarget(policy, url).ok;

describe('target policy: defaults', () => {
  it('allows http and https to ordinary hosts, loopback and private networks', () => {
    for (const url of [
      'http://example.com/',
      'https://example.com:8443/x?y=1',
      'http://127.0.0.1:3000/',
      'http://localhost/',
      'http://10.1.2.3/',
      'http://192.168.1.1/',
      'http://[::1]:8080/',
    ])
      expect(ok(open, url), url).toBe(true);
  });

  it('refuses other schemes and malformed URLs with a reason', () => {
    for (const url of [
      'file:///etc/passwd',
      'javascript:alert(1)',
      'data:text/html,hi',
      'ftp://example.com/',
      'chrome://settings',
      'not a url',
      '',
    ]) {
      const v = checkTarget(open, url);
      expect(v.ok, url).toBe(false);
      if (!v.ok) expect(v.reason.length).toBeGreaterThan(5);
    }
  });

  it('blocks cloud-metadata and link-local addresses in every spelling the URL parser accepts', () => {
    for (const url of [
      'http://169.254.169.254/latest/meta-data/',
      'http://169.254.1.1/',
      'http://[fd00:ec2::254]/',
      'http://[fe80::1]/',
      'http://[FE80::abcd:1]/',
      'http://metadata.google.internal/computeMetadata/v1/',
      'http://METADATA.GOOGLE.INTERNAL./',
      'http://metadata.goog/',
      'http://100.100.100.200/latest/meta-data/',
      // Numeric forms the WHATWG URL parser normalizes to 169.254.169.254.
      'http://2852039166/',
      'http://0xa9.0xfe.0xa9.0xfe/',
      'http://0251.0376.0251.0376/',
      'http://169.254.43518/',
      // IPv4-mapped and NAT64 IPv6 spellings.
      'http://[::ffff:169.254.169.254]/',
      'http://[::ffff:a9fe:a9fe]/',
      'http://[64:ff9b::169.254.169.254]/',
      'https://user:pw@169.254.169.254:443/',
    ]) {
      const v = checkTarget(open, url);
      expect(v.ok, url).toBe(false);
      if (!v.ok) expect(v.reason).toMatch(/ALLOW_PRIVATE_TARGETS/);
    }
  });

  it('allows link-local and metadata addresses when ALLOW_PRIVATE_TARGETS is set', () => {
    const local = parseTargetPolicy({ allowPrivateTargets: true });
    expect(ok(local, 'http://169.254.169.254/')).toBe(true);
    expect(ok(local, 'http://[fe80::1]/')).toBe(true);
    expect(ok(local, 'http://metadata.google.internal/')).toBe(true);
    expect(ok(local, 'file:///etc/passwd')).toBe(false);
  });

  it('does not block lookalikes of the blocked ranges', () => {
    expect(ok(open, 'http://169.255.0.1/')).toBe(true);
    expect(ok(open, 'http://[fec0::1]/')).toBe(true);
    expect(ok(open, 'http://metadata.google.internal.example.com/')).toBe(true);
    expect(ok(open, 'http://100.100.100.201/')).toBe(true);
  });
});

describe('target policy: ALLOWED_TARGETS', () => {
  const policy = parseTargetPolicy({
    allowedTargets:
      'example.com, *.shop.test ,10.0.0.0/8,127.0.0.1:3000,[::1]:8080,2001:db8::/32, Upper.Test',
  });

  it('allows exactly the listed names, globs, CIDRs and ports', () => {
    for (const url of [
      'https://example.com/',
      'http://EXAMPLE.com./a',
      'https://a.shop.test/',
      'https://a.b.shop.test/',
      'http://10.20.30.40/',
      'http://127.0.0.1:3000/',
      'http://[::1]:8080/',
      'http://[2001:db8::5]/',
      'http://upper.test/',
    ])
      expect(ok(policy, url), url).toBe(true);
  });

  it('refuses everything else, naming ALLOWED_TARGETS', () => {
    for (const url of [
      'https://www.example.com/',
      'https://shop.test/',
      'https://evilshop.test/',
      'http://11.0.0.1/',
      'http://127.0.0.1:3001/',
      'http://127.0.0.1/',
      'http://[::1]:8081/',
      'http://[2001:db9::1]/',
      'http://example.com.evil.test/',
    ]) {
      const v = checkTarget(policy, url);
      expect(v.ok, url).toBe(false);
      if (!v.ok) expect(v.reason).toMatch(/ALLOWED_TARGETS/);
    }
  });

  it('keeps metadata blocked even when an allowlist CIDR covers it', () => {
    const wide = parseTargetPolicy({ allowedTargets: '0.0.0.0/0' });
    expect(ok(wide, 'http://8.8.8.8/')).toBe(true);
    expect(ok(wide, 'http://169.254.169.254/')).toBe(false);
  });

  it('rejects malformed entries with a ConfigError naming the entry and the variable', () => {
    for (const bad of ['exa mple.com', '10.0.0.0/33', '1.2.3.4/x', 'host:port', 'http://x.test/', '[::1']) {
      expect(() => parseTargetPolicy({ allowedTargets: bad }), bad).toThrow(ConfigError);
      try {
        parseTargetPolicy({ allowedTargets: bad });
      } catch (err) {
        expect((err as Error).message).toContain('ALLOWED_TARGETS');
      }
    }
    expect(parseTargetPolicy({ allowedTargets: ' , ' }).allowed).toEqual([]);
    expect(parseTargetPolicy({ allowedTargets: '' }).allowed).toBeNull();
  });
});

describe('createTargetCheck (the runner checkUrl hook)', () => {
  it('throws TargetNotAllowedError for refused URLs and returns for allowed ones', () => {
    const check = createTargetCheck(parseTargetPolicy({ allowedTargets: 'example.com' }));
    expect(() => check('https://example.com/')).not.toThrow();
    expect(() => check('https://other.test/')).toThrow(TargetNotAllowedError);
    expect(() => check('http://169.254.169.254/')).toThrow(/navigation refused/);
  });
});

describe('checkHost and checkAddress (the egress proxy: the name, then each address it resolves to)', () => {
  it('checkHost applies the URL rules to a host and port, in the forms a proxy request carries', () => {
    const policy = parseTargetPolicy({ allowedTargets: 'example.com:443,127.0.0.1:8001,[::1]:8080' });
    expect(checkHost(policy, 'EXAMPLE.com.', 443).ok).toBe(true);
    expect(checkHost(policy, 'example.com', 80)).toEqual({
      ok: false,
      reason: 'example.com:80 is not in ALLOWED_TARGETS',
    });
    expect(checkHost(policy, '127.0.0.1', '8001').ok).toBe(true);
    expect(checkHost(policy, '127.0.0.1', 8002)).toEqual({
      ok: false,
      reason: '127.0.0.1:8002 is not in ALLOWED_TARGETS',
    });
    expect(checkHost(policy, '::1', 8080).ok).toBe(true);
    expect(checkHost(policy, '[::1]', 8081)).toEqual({
      ok: false,
      reason: '[::1]:8081 is not in ALLOWED_TARGETS',
    });
    expect(checkHost(open, 'metadata.google.internal', 80).ok).toBe(false);
    expect(checkHost(open, '169.254.169.254', 80).ok).toBe(false);
  });

  it('refuses a link-local or metadata address whatever name resolved to it, unless ALLOW_PRIVATE_TARGETS', () => {
    for (const address of [
      '169.254.169.254',
      '169.254.1.1',
      'fe80::1',
      'fd00:ec2::254',
      '::ffff:169.254.169.254',
      '100.100.100.200',
    ]) {
      const v = checkAddress(open, 'rebind.example.com', 80, address);
      expect(v.ok, address).toBe(false);
      if (!v.ok) expect(v.reason).toMatch(/rebind\.example\.com resolves to .*ALLOW_PRIVATE_TARGETS=true/);
    }
    const local = parseTargetPolicy({ allowPrivateTargets: true });
    expect(checkAddress(local, 'rebind.example.com', 80, '169.254.169.254').ok).toBe(true);
  });

  it('with no ALLOWED_TARGETS, lets names resolve to loopback, private and public addresses', () => {
    for (const address of [
      '127.0.0.1',
      '10.1.2.3',
      '192.168.0.10',
      '::1',
      '93.184.216.34',
      '2606:2800:220:1::1',
    ])
      expect(checkAddress(open, 'app.test', 443, address).ok, address).toBe(true);
  });

  it('with ALLOWED_TARGETS, a listed name may resolve inside the network only to an address the list names', () => {
    const policy = parseTargetPolicy({
      allowedTargets: '*.shop.test,allowed.test,10.0.0.0/8,127.0.0.1:8001',
    });
    expect(checkAddress(policy, 'a.shop.test', 443, '93.184.216.34').ok).toBe(true);
    expect(checkAddress(policy, 'a.shop.test', 443, '10.9.9.9').ok).toBe(true);
    expect(checkAddress(policy, 'allowed.test', 8001, '127.0.0.1').ok).toBe(true);
    for (const [port, address] of [
      [8002, '127.0.0.1'],
      [8001, '127.0.0.2'],
      [443, '192.168.1.1'],
      [443, '172.16.0.1'],
      [443, '0.0.0.0'],
      [443, '::1'],
      [443, 'fc00::1'],
      [443, '::ffff:127.0.0.1'],
      [443, '100.64.0.1'],
    ] as const) {
      const v = checkAddress(policy, 'allowed.test', port, address);
      expect(v.ok, `${address}:${port}`).toBe(false);
      if (!v.ok)
        expect(v.reason).toMatch(
          /^allowed\.test resolves to .*, an internal address ALLOWED_TARGETS does not list; add /,
        );
    }
    // The list still never reaches metadata by a name.
    const wide = parseTargetPolicy({ allowedTargets: 'allowed.test,0.0.0.0/0' });
    expect(checkAddress(wide, 'allowed.test', 80, '169.254.169.254').ok).toBe(false);
    expect(checkAddress(wide, 'allowed.test', 80, '10.0.0.1').ok).toBe(true);
  });

  it('lets localhost resolve to loopback when the list names localhost, and refuses non-addresses', () => {
    const policy = parseTargetPolicy({ allowedTargets: 'localhost:3000' });
    expect(checkAddress(policy, 'localhost', 3000, '127.0.0.1').ok).toBe(true);
    expect(checkAddress(policy, 'localhost', 3000, '::1').ok).toBe(true);
    expect(checkAddress(policy, 'localhost', 3000, '10.0.0.1').ok).toBe(false);
    expect(checkAddress(open, 'x.test', 80, 'not-an-ip').ok).toBe(false);
  });
});
