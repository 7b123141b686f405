import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { waitFor } from '../upstreams/wait.js';
import { accepts, freePort } from './net.js';

/**
 * Debian's pymodbus (`apt install python3-pymodbus`), seen only by the system python (a pyenv
 * python earlier on PATH does not have it).
 */
export const SYSTEM_PYTHON = '/usr/bin/python3';

export interface PymodbusRegisters {
  /** 0-based address → 16-bit value, per unit id (default unit 1). */
  holding?: Record<number, number>;
  input?: Record<number, number>;
  coils?: Record<number, boolean>;
  discrete?: Record<number, boolean>;
}

export interface PymodbusServer {
  readonly port: number;
  stop(): Promise<void>;
}

const SCRIPT = `
import json, sys, logging
logging.basicConfig(level=logging.ERROR)
from pymodbus.server import StartTcpServer
from pymodbus.datastore import ModbusSequentialDataBlock, ModbusSlaveContext, ModbusServerContext

port = int(sys.argv[1])
spec = json.load(open(sys.argv[2]))

def block(values, size=1000):
    data = [0] * size
    for addr, v in values.items():
        data[int(addr)] = int(v)
    # zero_mode below makes protocol address 0 the first element.
    return ModbusSequentialDataBlock(0, data)

slaves = {}
for unit, regs in spec.items():
    slaves[int(unit)] = ModbusSlaveContext(
        hr=block(regs.get("holding", {})), ir=block(regs.get("input", {})),
        co=block(regs.get("coils", {})), di=block(regs.get("discrete", {})), zero_mode=True)
context = ModbusServerContext(slaves=slaves, single=False)
StartTcpServer(context=context, address=("127.0.0.1", port), allow_reuse_address=True)
`;

/**
 * Starts a pymodbus 3.0 TCP server on a free 127.0.0.1 port serving `registers` (by unit id),
 * and resolves once it accepts connections.
 */
export async function startPymodbus(units: Record<number, PymodbusRegisters>): Promise<PymodbusServer> {
  const dir = mkdtempSync(join(tmpdir(), 'tidegate-pymodbus-'));
  const script = join(dir, 'server.py');
  const spec = join(dir, 'registers.json');
  writeFileSync(script, SCRIPT);
  writeFileSync(spec, JSON.stringify(units));
  const port = await freePort();
  const child: ChildProcess = spawn(SYSTEM_PYTHON, [script, String(port), spec], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  let gone = false;
  child.stderr?.setEncoding('utf8').on('data', (d: string) => {
    stderr = (stderr + d).slice(-4000);
  });
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => {
      gone = true;
      resolve();
    });
    child.once('error', (err) => {
      gone = true;
      stderr += err.message;
      resolve();
    });
  });
  const stop = async () => {
    if (!gone) {
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(killer);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    let ready = false;
    const poll = async () => {
      while (!ready && !gone) {
        ready = await accepts(port);
        if (!ready) await new Promise((r) => setTimeout(r, 50));
      }
    };
    void poll();
    await waitFor(`pymodbus on port ${port}`, () => ready || gone, 10_000);
    if (!ready) throw new Error(`pymodbus exited at start: ${stderr.trim()}`);
  } catch (err) {
    await stop();
    throw err;
  }
  return { port, stop };
}
