import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import type { TempDir } from '../helpers/tmp.js';

export interface TestCertificates {
  /** PEM file paths. */
  ca: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
}

/**
 * A throwaway CA with a server certificate for 127.0.0.1 and a client certificate, made with the
 * system's openssl (EC keys: fast). `forPeersOnTheRealClock`: for a peer that reads the real clock
 * even under faketime (nats-server, a Go program, makes its system calls itself), the certificates
 * are made on the real clock and valid for 800 days, so that they hold on both clocks.
 */
export function makeCertificates(
  dir: TempDir,
  options: { forPeersOnTheRealClock?: boolean } = {},
): TestCertificates {
  const f = (name: string) => dir.file(name);
  const real = options.forPeersOnTheRealClock === true;
  const env = real
    ? Object.fromEntries(
        Object.entries(process.env).filter(([k]) => k !== 'LD_PRELOAD' && !k.startsWith('FAKETIME')),
      )
    : process.env;
  const days = real ? '800' : '2';
  const openssl = (...args: string[]) =>
    execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'], env });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl(
    'req',
    '-x509',
    ...ec,
    '-keyout',
    f('ca.key'),
    '-out',
    f('ca.pem'),
    '-days',
    days,
    '-subj',
    '/CN=tidegate test CA',
  );
  writeFileSync(f('server.ext'), 'subjectAltName=IP:127.0.0.1\n');
  for (const who of ['server', 'client']) {
    openssl(
      'req',
      ...ec,
      '-keyout',
      f(`${who}.key`),
      '-out',
      f(`${who}.csr`),
      '-subj',
      `/CN=${who === 'server' ? '127.0.0.1' : 'tidegate'}`,
    );
    openssl(
      'x509',
      '-req',
      '-in',
      f(`${who}.csr`),
      '-CA',
      f('ca.pem'),
      '-CAkey',
      f('ca.key'),
      '-CAcreateserial',
      '-days',
      days,
      '-out',
      f(`${who}.pem`),
      ...(who === 'server' ? ['-extfile', f('server.ext')] : []),
    );
  }
  return {
    ca: f('ca.pem'),
    serverCert: f('server.pem'),
    serverKey: f('server.key'),
    clientCert: f('client.pem'),
    clientKey: f('client.key'),
  };
}
