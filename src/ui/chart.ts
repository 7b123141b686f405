import { useEffect, useLayoutEffect, useRef, useState } from 'preact/hooks';
import uPlot from 'uplot';
import { html } from './html.js';

export interface Series {
  label: string;
  values: (number | null)[];
}

/** A chart's data: x in epoch seconds (uPlot's time scale), one array of values per series. */
export interface ChartData {
  x: number[];
  series: Series[];
}

/** A vertical mark at a time (epoch seconds): a decision's transition. */
export interface Mark {
  at: number;
  state: 'firing' | 'ok';
}

const COLORS = ['#0b7fa6', '#c2410c', '#15803d', '#7c3aed', '#b91c1c', '#0f766e', '#a16207', '#be185d'];

/** The width of an element, following its resizes (0 until it is laid out). */
export function useWidth(ref: { current: HTMLElement | null }): number {
  const [width, setWidth] = useState(0);
  // Measured before the browser paints (a layout effect), not a frame later: the history's
  // request and each chart wait for it.
  useLayoutEffect(() => {
    const el = ref.current;
    if (!el) return;
    setWidth(Math.floor(el.clientWidth));
    const observer = new ResizeObserver(() => setWidth(Math.floor(el.clientWidth)));
    observer.observe(el);
    return () => observer.disconnect();
  }, [ref.current]);
  return width;
}

/**
 * A uPlot chart with an accessible name (`role="img"`, `aria-label`), which also tells on
 * `data-points` how many points it draws (and `data-drawn` how often it drew), so that tests
 * assert on data rather than pixels. It fills its container's width.
 */
export function Chart(props: {
  label: string;
  data: ChartData;
  marks?: Mark[];
  height?: number;
  /** The x axis's extent (epoch seconds); else the data's. */
  xRange?: [number, number];
  /**
   * The data is still on its way: the box keeps its place, and the plot is made when it comes
   * (ten empty plots made at once, while the answers arrive, delayed the first drawn one).
   */
  pending?: boolean;
}) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const marks = useRef<Mark[]>([]);
  const drawn = useRef(0);
  marks.current = props.marks ?? [];
  const xRange = useRef(props.xRange);
  xRange.current = props.xRange;
  const width = useWidth(box);
  const height = props.height ?? 220;
  const shape = props.data.series.map((s) => s.label).join('\u0000');

  const pending = props.pending === true;
  useEffect(() => {
    const el = box.current;
    if (!el || width === 0 || pending) return;
    const opts: uPlot.Options = {
      width,
      height,
      legend: { show: props.data.series.length > 1 },
      cursor: { drag: { x: true, y: false } },
      scales: {
        x: { time: true, range: (_u, min, max) => xRange.current ?? [min, max] },
      },
      axes: [{ stroke: 'currentColor' }, { stroke: 'currentColor', size: 56 }],
      series: [
        {},
        ...props.data.series.map((s, i) => ({
          label: s.label,
          stroke: COLORS[i % COLORS.length] as string,
          width: 1.5,
          spanGaps: false,
          points: { show: false },
        })),
      ],
      hooks: {
        draw: [
          (u: uPlot) => {
            drawn.current++;
            el.dataset['drawn'] = String(drawn.current);
            const { ctx } = u;
            const { top, height: h } = u.bbox;
            ctx.save();
            ctx.lineWidth = 2 * devicePixelRatio;
            for (const m of marks.current) {
              const x = u.valToPos(m.at, 'x', true);
              if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
              ctx.strokeStyle = m.state === 'firing' ? '#dc2626' : '#16a34a';
              ctx.beginPath();
              ctx.moveTo(x, top);
              ctx.lineTo(x, top + h);
              ctx.stroke();
            }
            ctx.restore();
          },
        ],
      },
    };
    const u = new uPlot(opts, toAligned(props.data), el);
    plot.current = u;
    return () => {
      u.destroy();
      plot.current = null;
    };
  }, [shape, width === 0, height, pending]);

  useEffect(() => {
    plot.current?.setData(toAligned(props.data));
  }, [props.data, props.marks, props.xRange?.[0], props.xRange?.[1]]);

  useEffect(() => {
    if (width > 0) plot.current?.setSize({ width, height });
  }, [width, height]);

  return html`<div
    class="chart"
    ref=${box}
    role="img"
    aria-label=${props.label}
    aria-busy=${pending ? 'true' : undefined}
    data-points=${props.data.x.length}
    data-marks=${props.marks?.length ?? 0}
  ></div>`;
}

function toAligned(data: ChartData): uPlot.AlignedData {
  return [data.x, ...data.series.map((s) => s.values)] as uPlot.AlignedData;
}
