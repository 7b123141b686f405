import { isBitTable, type ProfileRegister, TABLES, type Table, WORDS } from './profile.js';

/**
 * Coalescing: the requests that read every register of a profile, joining registers of one table
 * that lie close together into one request, so a 20-register meter costs one round trip, not 20.
 */

export interface PlannedRegister {
  register: ProfileRegister;
  /** Position of the register's first word (or bit) in the request's response. */
  offset: number;
}

export interface ReadRequest {
  table: Table;
  address: number;
  /** Registers (holding, input) or bits (coil, discrete) to read. */
  count: number;
  registers: PlannedRegister[];
}

export interface PlanOptions {
  /** Most registers per request (≤ 125). */
  maxRegisters: number;
  /** Most unused registers read to join two neighbours (coils and discrete inputs: × 16 bits). */
  maxGap: number;
}

/** The protocol's limit on coils or discrete inputs per request. */
export const MAX_BITS = 2000;

export function width(register: Pick<ProfileRegister, 'table' | 'type'>): number {
  return isBitTable(register.table) ? 1 : WORDS[register.type];
}

/**
 * Requests for `registers`, by table (holding, input, coil, discrete) then address. Registers in
 * address order are added to the current request while the gap to it is at most `maxGap` and the
 * request stays within `maxRegisters`; otherwise a new request starts. Overlapping registers (two
 * metrics from one word, say two bits) share the words they overlap.
 */
export function planReads(registers: readonly ProfileRegister[], options: PlanOptions): ReadRequest[] {
  const requests: ReadRequest[] = [];
  for (const table of TABLES) {
    const bits = isBitTable(table);
    const max = bits ? MAX_BITS : options.maxRegisters;
    const gap = bits ? options.maxGap * 16 : options.maxGap;
    const sorted = registers
      .filter((r) => r.table === table)
      .sort((a, b) => a.address - b.address || width(a) - width(b));
    let current: ReadRequest | null = null;
    for (const register of sorted) {
      const w = width(register);
      if (w > max) throw new RangeError(`a ${register.type} (${w} registers) exceeds maxRegisters ${max}`);
      if (current) {
        const end = current.address + current.count;
        const newEnd = Math.max(end, register.address + w);
        if (register.address - end <= gap && newEnd - current.address <= max) {
          current.count = newEnd - current.address;
          current.registers.push({ register, offset: register.address - current.address });
          continue;
        }
      }
      current = { table, address: register.address, count: w, registers: [{ register, offset: 0 }] };
      requests.push(current);
    }
  }
  return requests;
}
