// The Electron session's security wiring: permissions denied (but the app origin's loopback access),
// the app scheme served from the renderer folder, and every web contents kept on the app origin
// (navigation, redirects and webviews refused; window.open goes to the system browser, allowlisted
// hosts only). Each decision is a pure function in permission-policy.ts / url-policy.ts.
import { readFile } from 'node:fs/promises';
import { app, shell, type Session } from 'electron';
import { APP_SCHEME } from './app-origin.ts';
import { isPermissionAllowed } from './permission-policy.ts';
import { appAssetResponse, isAllowedExternal, isAllowedNavigation } from './url-policy.ts';

/**
 * Locks `ses` down and serves the app scheme. The page's CSP admits exactly the running server
 * (`endpoint()`, connect-src); it is fixed when the page loads, so the result tells which endpoint
 * the last page was served with (the window reloads when the server's endpoint changes).
 */
export function secureSession(ses: Session, rendererDir: string, endpoint: () => string | null): { pageEndpoint(): string | null } {
  // Denied, except loopback access for the app origin (the Models page calls the local server).
  ses.setPermissionRequestHandler((_wc, permission, callback, details) => callback(isPermissionAllowed(permission, details.requestingUrl)));
  ses.setPermissionCheckHandler((_wc, permission, requestingOrigin) => isPermissionAllowed(permission, requestingOrigin));
  ses.setDevicePermissionHandler(() => false);
  let pageEndpoint: string | null = null;
  ses.protocol.handle(APP_SCHEME, (request) =>
    appAssetResponse(rendererDir, request.url, {
      endpoint,
      onPage: (e) => {
        pageEndpoint = e;
      },
      read: (file) => readFile(file),
    }),
  );
  return { pageEndpoint: () => pageEndpoint };
}

/** Every web contents stays on the app origin; external links open in the browser (allowlist). */
export function guardWebContents(): void {
  app.on('web-contents-created', (_e, contents) => {
    contents.on('will-navigate', (event, url) => {
      if (!isAllowedNavigation(url)) event.preventDefault();
    });
    contents.on('will-redirect', (event, url) => {
      if (!isAllowedNavigation(url)) event.preventDefault();
    });
    contents.on('will-attach-webview', (event) => event.preventDefault());
    contents.setWindowOpenHandler(({ url }) => {
      if (isAllowedExternal(url)) void shell.openExternal(url);
      return { action: 'deny' };
    });
  });
}
