import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { decoyHash, hashPassword, verifyPassword } from '../../src/sources/password.js';

describe('password hashes', () => {
  let hash = '';

  before(async () => {
    hash = await hashPassword('correct horse battery staple');
  });

  it('writes scrypt$N$r$p$salt$hash, the form the config schema expects', () => {
    assert.match(hash, /^scrypt\$\d+\$\d+\$\d+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$/);
    assert.ok(!hash.includes('correct horse'));
  });

  it('verifies the right password', async () => {
    assert.equal(await verifyPassword('correct horse battery staple', hash), true);
    assert.equal(await verifyPassword(Buffer.from('correct horse battery staple'), hash), true);
  });

  it('refuses a wrong password', async () => {
    assert.equal(await verifyPassword('correct horse battery stapl', hash), false);
    assert.equal(await verifyPassword('', hash), false);
    assert.equal(await verifyPassword('Correct horse battery staple', hash), false);
  });

  it('salts: two hashes of one password differ and both verify', async () => {
    const again = await hashPassword('correct horse battery staple');
    assert.notEqual(again, hash);
    assert.equal(await verifyPassword('correct horse battery staple', again), true);
  });

  it('handles an empty and a non-ASCII password', async () => {
    const empty = await hashPassword('');
    assert.equal(await verifyPassword('', empty), true);
    assert.equal(await verifyPassword(' ', empty), false);
    const unicode = await hashPassword('pässwört🔑');
    assert.equal(await verifyPassword('pässwört🔑', unicode), true);
    assert.equal(await verifyPassword('passwort🔑', unicode), false);
  });

  it('returns false, without throwing, for malformed hashes', async () => {
    const [, n, r, p, salt, key] = hash.split('$');
    const malformed = [
      '',
      'plain-text-password',
      'bcrypt$10$abc',
      `argon2$${n}$${r}$${p}$${salt}$${key}`,
      `scrypt$${n}$${r}$${p}$${salt}`, // a part missing
      `scrypt$${n}$${r}$${p}$${salt}$${key}$extra`,
      `scrypt$1000$${r}$${p}$${salt}$${key}`, // N not a power of two
      `scrypt$${2 ** 21}$${r}$${p}$${salt}$${key}`, // N too large (memory)
      `scrypt$x$${r}$${p}$${salt}$${key}`,
      `scrypt$${n}$0$${p}$${salt}$${key}`,
      `scrypt$${n}$${r}$99$${salt}$${key}`,
      `scrypt$${n}$${r}$${p}$${salt}$${(key ?? '').slice(0, 8)}`, // short key
      `scrypt$${n}$${r}$${p}$${salt}$`,
    ];
    for (const m of malformed) {
      assert.equal(await verifyPassword('correct horse battery staple', m), false, m);
    }
  });

  it('refuses a hash whose key was altered', async () => {
    const parts = hash.split('$');
    const key = Buffer.from(parts[5] ?? '', 'base64');
    key[0] = (key[0] ?? 0) ^ 1;
    parts[5] = key.toString('base64');
    assert.equal(await verifyPassword('correct horse battery staple', parts.join('$')), false);
  });

  it('makes decoy hashes with the parameters of a given hash, new each time, that no password matches', async () => {
    const params = (h: string) => h.split('$').slice(0, 4).join('$');
    const like = 'scrypt$1024$8$2$c2FsdA==$a2V5';
    assert.equal(params(decoyHash(like)), 'scrypt$1024$8$2');
    assert.equal(params(decoyHash()), params(hash), 'the defaults of hashPassword');
    assert.equal(params(decoyHash('garbage')), params(hash));
    const decoy = decoyHash(hash);
    assert.notEqual(decoy, decoyHash(hash));
    assert.match(decoy, /^scrypt\$\d+\$\d+\$\d+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$/);
    assert.equal(await verifyPassword('correct horse battery staple', decoy), false);
    assert.equal(await verifyPassword('', decoy), false);
  });
});
