import type { RegisterType } from '../../../src/sources/modbus/profile.js';

/** The registers a device with these orders sends for `value` (the inverse of decoding). */
export function encode(
  type: Exclude<RegisterType, 'bool'>,
  value: number,
  wordOrder: 'big' | 'little' = 'big',
  byteOrder: 'big' | 'little' = 'big',
): number[] {
  const view = new DataView(new ArrayBuffer(8));
  const n = { int16: 1, uint16: 1, int32: 2, uint32: 2, float32: 2, float64: 4 }[type];
  if (type === 'int16') view.setInt16(0, value);
  else if (type === 'uint16') view.setUint16(0, value);
  else if (type === 'int32') view.setInt32(0, value);
  else if (type === 'uint32') view.setUint32(0, value);
  else if (type === 'float32') view.setFloat32(0, value);
  else view.setFloat64(0, value);
  const words: number[] = [];
  for (let i = 0; i < n; i++) {
    const w = view.getUint16(i * 2);
    words.push(byteOrder === 'big' ? w : ((w & 0xff) << 8) | (w >>> 8));
  }
  return wordOrder === 'big' ? words : words.reverse();
}
