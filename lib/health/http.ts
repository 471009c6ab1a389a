/**
 * The health endpoints.
 *
 *   GET {httpNodeRoot}/wechat-cxone/health           public: overall status and every node's figures as JSON,
 *                                                     no error texts; 200 when ok or degraded, 503 when down
 *   GET {httpNodeRoot}/wechat-cxone/health/metrics   the same figures as Prometheus text
 *   GET {httpAdminRoot}/wechat-cxone/health          admin (needs permission `wechat-cxone.read`): with the
 *                                                     last error text of each node; `?format=prometheus` too
 *
 * The public routes are claimed through the route registry while at least one node reports (and released when
 * the last one closes); the admin route is mounted once per runtime.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { RouteDef } from '../http/registry';
import { sendJson, sendText } from '../http/respond';
import { type HealthRegistry, type HealthSnapshot, prometheusText, publicView } from './registry';

export const HEALTH_BASE_PATH = '/wechat-cxone/health';
export const HEALTH_ADMIN_PATH = '/wechat-cxone/health';
export const HEALTH_PERMISSION = 'wechat-cxone.read';

function httpStatus(s: HealthSnapshot): number {
  return s.status === 'down' ? 503 : 200;
}

const PROM_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/** Route table for the route registry. */
export function publicHealthRoutes(registry: HealthRegistry): RouteDef[] {
  return [
    {
      method: 'GET',
      pattern: '',
      handler: (ctx) => {
        const snap = registry.snapshot();
        sendJson(ctx.res, httpStatus(snap), publicView(snap));
      },
    },
    {
      method: 'GET',
      pattern: '/metrics',
      handler: (ctx) => {
        const snap = registry.snapshot();
        sendText(ctx.res, 200, prometheusText(publicView(snap)), {
          'Content-Type': PROM_TYPE,
          'Cache-Control': 'no-store',
        });
      },
    },
  ];
}

/** The admin handler (mount behind `RED.auth.needsPermission(HEALTH_PERMISSION)`). */
export function adminHealthHandler(
  registry: HealthRegistry,
): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    const snap = registry.snapshot();
    const q = (req.url ?? '').split('?')[1] ?? '';
    if (new URLSearchParams(q).get('format') === 'prometheus') {
      sendText(res, 200, prometheusText(snap), { 'Content-Type': PROM_TYPE, 'Cache-Control': 'no-store' });
      return;
    }
    sendJson(res, httpStatus(snap), snap);
  };
}
