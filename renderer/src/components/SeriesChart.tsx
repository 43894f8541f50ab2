// A fixed-height line chart for one group of series. Fixed height + disabled animation keep the
// layout still while data arrives every second.
import { CartesianGrid, Legend, Line, LineChart, ResponsiveContainer, Tooltip, XAxis, YAxis } from 'recharts';
import type { Sample } from '../api/history.ts';
import { clock } from '../format.ts';
import type { Palette } from '../theme.ts';

export interface SeriesDef {
  key: keyof Sample;
  name: string;
}

export function SeriesChart(props: {
  data: Sample[];
  series: SeriesDef[];
  palette: Palette;
  unit: (v: number) => string;
  empty: string;
  height?: number;
}) {
  const h = props.height ?? 190;
  if (props.data.length < 2) {
    return (
      <div className="chart-box chart-empty" style={{ height: h }}>
        <span>{props.empty}</span>
      </div>
    );
  }
  const p = props.palette;
  return (
    <div className="chart-box" style={{ height: h }}>
      <ResponsiveContainer width="100%" height="100%">
        <LineChart data={props.data} margin={{ top: 8, right: 12, bottom: 0, left: 0 }}>
          <CartesianGrid stroke={p.grid} strokeDasharray="3 3" vertical={false} />
          <XAxis
            dataKey="t"
            type="number"
            domain={['dataMin', 'dataMax']}
            tickFormatter={clock}
            stroke={p.axis}
            tick={{ fontSize: 11 }}
            minTickGap={48}
          />
          <YAxis stroke={p.axis} tick={{ fontSize: 11 }} width={64} tickFormatter={(v: number) => props.unit(v)} />
          <Tooltip
            isAnimationActive={false}
            labelFormatter={(v) => clock(Number(v))}
            formatter={(v) => props.unit(Number(v))}
            contentStyle={{ background: p.tooltipBg, border: `1px solid ${p.tooltipBorder}`, borderRadius: 8, fontSize: 12 }}
          />
          <Legend iconType="plainline" wrapperStyle={{ fontSize: 12 }} />
          {props.series.map((s, i) => (
            <Line
              key={String(s.key)}
              type="linear"
              dataKey={s.key}
              name={s.name}
              stroke={p.series[i % p.series.length]}
              strokeWidth={2}
              dot={false}
              isAnimationActive={false}
            />
          ))}
        </LineChart>
      </ResponsiveContainer>
    </div>
  );
}
