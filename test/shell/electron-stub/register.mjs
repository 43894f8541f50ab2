// node --import this file (or module.register it) to resolve `electron` to the stub next to it.
import { register } from 'node:module';

register(new URL('./hooks.mjs', import.meta.url));
