// A local HTTPS server that plays the regional Carbon Intensity API:
//   GET /regional/intensity/{from}/{to}/postcode/{outcode}, times YYYY-MM-DDThh:mmZ,
// refusing (400) any call of 14 days or more, as the real one does. It answers with the
// synthetic model of src/reference-apis/intensity-sample.ts, alternating the two shapes the real
// API uses: `data` as an array of one region, and `data` as the region object itself.
import https from 'node:https';
import type { AddressInfo } from 'node:net';

import { SAMPLE_REGIONS, syntheticIntensity } from '../../src/reference-apis/intensity-sample.ts';

export interface FakeCall {
  outcode: string;
  from: Date;
  to: Date;
  shape: 'array' | 'object';
  status: number;
}

export interface FakeCarbonIntensityApi {
  url: string;
  calls: FakeCall[];
  /** Half-hour starts (epoch ms) left out of every answer, to make gaps. */
  drop: Set<number>;
  /**
   * Which periods a call returns: 'start' those starting in [from, to); 'end' those ending in
   * (from, to] (the API's periods are labelled by the half-hour ending at a time).
   */
  semantics: 'start' | 'end';
  /** Answer 503 to every call while true. */
  down: boolean;
  close(): Promise<void>;
}

const TIME = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2})Z$/;
const FOURTEEN_DAYS = 14 * 86_400_000;
const HALF_HOUR = 30 * 60_000;

function apiTime(t: number): string {
  return new Date(t).toISOString().slice(0, 16) + 'Z';
}

function indexOf(value: number): string {
  return value < 100 ? 'low' : value < 200 ? 'moderate' : 'high';
}

export async function startFakeCarbonIntensityApi(tls: { cert: string; key: string }): Promise<FakeCarbonIntensityApi> {
  let served = 0;
  const state: FakeCarbonIntensityApi = {
    url: '', calls: [], drop: new Set(), semantics: 'start', down: false,
    close: async () => {},
  };
  const server = https.createServer(tls, (req, res) => {
    const send = (status: number, body: unknown) => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    const m = /^\/regional\/intensity\/([^/]+)\/([^/]+)\/postcode\/([^/]+)$/.exec(req.url ?? '');
    if (!m) return send(404, { error: { code: '404 Not Found', message: 'not found' } });
    const [fromText, toText, outcode] = [decodeURIComponent(m[1]), decodeURIComponent(m[2]), decodeURIComponent(m[3])];
    if (!TIME.test(fromText) || !TIME.test(toText)) return send(400, { error: { code: '400 Bad Request', message: 'Please enter a valid ISO 8601 datetime i.e. YYYY-MM-DDThh:mmZ' } });
    const from = new Date(fromText).getTime();
    const to = new Date(toText).getTime();
    const shape = served++ % 2 === 0 ? 'array' : 'object';
    const call: FakeCall = { outcode, from: new Date(from), to: new Date(to), shape, status: 200 };
    state.calls.push(call);
    if (state.down) {
      call.status = 503;
      return send(503, { error: { code: '503', message: 'unavailable' } });
    }
    if (to - from >= FOURTEEN_DAYS || to <= from) {
      call.status = 400;
      return send(400, { error: { code: '400 Bad Request', message: 'Date range must be less than 14 days' } });
    }
    // 'end': the periods ending in (from, to], i.e. starting half an hour earlier.
    const offset = state.semantics === 'end' ? -HALF_HOUR : 0;
    const periods = [];
    for (let t = from + offset; t < to + offset; t += HALF_HOUR) {
      if (state.drop.has(t)) continue;
      const forecast = syntheticIntensity(outcode, new Date(t));
      periods.push({
        from: apiTime(t), to: apiTime(t + HALF_HOUR),
        intensity: { forecast, index: indexOf(forecast) },
        generationmix: [{ fuel: 'gas', perc: 40.1 }, { fuel: 'wind', perc: 35.2 }, { fuel: 'nuclear', perc: 24.7 }],
      });
    }
    const region = { regionid: SAMPLE_REGIONS[outcode]?.regionId ?? 13, dnoregion: 'Test DNO', shortname: SAMPLE_REGIONS[outcode]?.shortname ?? 'London', postcode: outcode, data: periods };
    send(200, { data: shape === 'array' ? [region] : region });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  state.url = `https://localhost:${(server.address() as AddressInfo).port}`;
  state.close = () => new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
  return state;
}
