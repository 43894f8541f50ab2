// Chart colours per colour scheme. SVG presentation attributes cannot read CSS variables reliably,
// so the charts get concrete colours from here; the rest of the page themes itself in CSS.
import { useEffect, useState } from 'react';

export interface Palette {
  grid: string;
  axis: string;
  tooltipBg: string;
  tooltipBorder: string;
  series: [string, string, string];
}

const LIGHT: Palette = {
  grid: '#e6e8ec',
  axis: '#6b7280',
  tooltipBg: '#ffffff',
  tooltipBorder: '#d7dae0',
  series: ['#2563eb', '#d97706', '#dc2626'],
};
const DARK: Palette = {
  grid: '#2a2f3a',
  axis: '#9aa3b2',
  tooltipBg: '#1b1f27',
  tooltipBorder: '#343a46',
  series: ['#60a5fa', '#fbbf24', '#f87171'],
};

function prefersDark(): boolean {
  return typeof matchMedia === 'function' && matchMedia('(prefers-color-scheme: dark)').matches;
}

export type ThemeSetting = 'system' | 'light' | 'dark';

/** Applies the theme setting to <html> (CSS reads data-theme) and returns the chart palette. */
export function usePalette(theme: ThemeSetting = 'system'): Palette {
  const [systemDark, setDark] = useState(prefersDark);
  useEffect(() => {
    if (theme === 'system') document.documentElement.removeAttribute('data-theme');
    else document.documentElement.setAttribute('data-theme', theme);
  }, [theme]);
  useEffect(() => {
    if (typeof matchMedia !== 'function') return;
    const mq = matchMedia('(prefers-color-scheme: dark)');
    const on = () => setDark(mq.matches);
    mq.addEventListener('change', on);
    return () => mq.removeEventListener('change', on);
  }, []);
  const dark = theme === 'dark' || (theme === 'system' && systemDark);
  return dark ? DARK : LIGHT;
}
