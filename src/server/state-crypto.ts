import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { SfwError } from '../core/errors.js';

/**
 * Named states at rest: AES-256-GCM under STATE_ENCRYPTION_KEY, a random 96-bit nonce per version, stored
 * as nonce ‖ ciphertext ‖ tag with the state's name as associated data (a version copied under another
 * name does not open). `keyId` (a hash of the key, not the key) tells a wrong key from damaged data.
 */

const NONCE_BYTES = 12;
const TAG_BYTES = 16;

export interface StateKey {
  key: Buffer;
  id: string;
}

export function stateKey(key: Buffer): StateKey {
  return { key, id: createHash('sha256').update('sfw-state-key:').update(key).digest('hex').slice(0, 16) };
}

export interface SealedState {
  data: Buffer;
  encrypted: boolean;
  keyId: string | null;
}

/** The bytes stored for a state's JSON: encrypted when there is a key, else as they are. */
export function sealState(name: string, json: Buffer, key: StateKey | undefined): SealedState {
  if (!key) return { data: json, encrypted: false, keyId: null };
  const nonce = randomBytes(NONCE_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key.key, nonce);
  cipher.setAAD(Buffer.from(name));
  const body = Buffer.concat([cipher.update(json), cipher.final()]);
  return { data: Buffer.concat([nonce, body, cipher.getAuthTag()]), encrypted: true, keyId: key.id };
}

/** A stored version's JSON; an encrypted one needs the key it was saved with. */
export function openState(
  name: string,
  version: number,
  stored: SealedState,
  key: StateKey | undefined,
): Buffer {
  if (!stored.encrypted) return stored.data;
  const what = `state "${name}" version ${version}`;
  if (!key)
    throw new SfwError(
      'STATE_KEY',
      `${what} is encrypted and the API has no STATE_ENCRYPTION_KEY: start it with the key the state was saved with`,
    );
  if (stored.keyId !== null && stored.keyId !== key.id)
    throw new SfwError(
      'STATE_KEY',
      `${what} was saved under another STATE_ENCRYPTION_KEY: start the API with that key, or save the state again`,
    );
  const d = stored.data;
  try {
    const decipher = createDecipheriv('aes-256-gcm', key.key, d.subarray(0, NONCE_BYTES));
    decipher.setAAD(Buffer.from(name));
    decipher.setAuthTag(d.subarray(d.length - TAG_BYTES));
    return Buffer.concat([decipher.update(d.subarray(NONCE_BYTES, d.length - TAG_BYTES)), decipher.final()]);
  } catch {
    throw new SfwError(
      'STATE_KEY',
      `${what} does not decrypt with STATE_ENCRYPTION_KEY (another key, or damaged): save the state again`,
    );
  }
}
