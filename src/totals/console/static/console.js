// The console page: live samples from /console/events drawn as figures and small SVG charts, the
// Add form (forwarded by the totals service to the calculator), a request's trace, and the topic
// browser. Plain browser JavaScript: no framework, nothing loaded from elsewhere.
'use strict';

const HISTORY = 300;
const samples = [];
const $ = (id) => document.getElementById(id);

/** An element with text content only: nothing read from the server is ever parsed as HTML. */
function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === 'class') node.className = value;
    else node.setAttribute(name, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

const number = new Intl.NumberFormat();
const rate = (value) => (value === null || value === undefined ? '–' : value < 10 ? value.toFixed(1) : number.format(Math.round(value)));
// A histogram knows the bucket a latency falls under, not the latency itself.
const bound = (value, largest) => (value === null ? '?' : value === '+Inf' ? `> ${largest} s` : value < 1 ? `${Math.round(value * 1000)} ms` : `${value} s`);
const seconds = (value) => (value < 60 ? `${value.toFixed(1)} s` : `${Math.floor(value / 60)} min ${Math.round(value % 60)} s`);

// Live figures ---------------------------------------------------------------------------------

function connect() {
  const source = new EventSource('/console/events');
  source.addEventListener('open', () => setConnection('Live'));
  source.addEventListener('error', () => setConnection('Connection lost; retrying…'));
  source.addEventListener('history', (event) => {
    samples.length = 0;
    samples.push(...JSON.parse(event.data));
    if (samples.length > 0) show(samples[samples.length - 1]);
    draw();
  });
  source.addEventListener('sample', (event) => {
    const sample = JSON.parse(event.data);
    samples.push(sample);
    if (samples.length > HISTORY) samples.shift();
    show(sample);
    draw();
  });
}

function setConnection(text) {
  if ($('connection').textContent !== text) $('connection').textContent = text;
}

function show(sample) {
  setConnection(`Live, updated ${new Date(sample.at).toLocaleTimeString()}`);
  // The total is an exact decimal string; it is shown as it came, never through a float.
  $('total').textContent = sample.total ?? '–';
  $('count').textContent = sample.count === null ? '–' : number.format(sample.count);
  $('accepted-rate').textContent = rate(sample.acceptedPerSecond);
  $('applied-rate').textContent = rate(sample.appliedPerSecond);
  const outbox = sample.outbox;
  $('outbox').textContent = outbox ? `${number.format(outbox.pending)}${outbox.parked ? ` (+${outbox.parked} parked)` : ''}` : '–';
  $('outbox-age').textContent = outbox ? (outbox.pending ? seconds(outbox.oldestAgeSeconds) : 'empty') : '–';
  $('lag').textContent = sample.totalLag === null ? '–' : number.format(sample.totalLag);
  // Above the largest bucket (30 s end to end, 10 s for an answer) a histogram knows only that.
  const percentiles = (latency, largest) =>
    !latency ? '–' : latency.events === 0 ? 'no events' : `≤ ${bound(latency.p50, largest)} / ≤ ${bound(latency.p99, largest)}`;
  $('ack-latency').textContent = percentiles(sample.ack, 10);
  $('latency').textContent = percentiles(sample.endToEnd, 30);

  $('lag-table').tBodies[0].replaceChildren(
    ...sample.consumerLag.map((p) =>
      el('tr', {}, el('td', {}, p.partition), el('td', {}, p.committed ?? 'none'), el('td', {}, p.end ?? '?'), el('td', {}, p.lag ?? `? (${p.error ?? 'unknown'})`)),
    ),
  );
  $('components').replaceChildren(
    ...sample.components.map((c) =>
      el(
        'li',
        { class: c.healthy ? 'ok' : 'down', 'data-component': c.name, 'data-healthy': String(c.healthy) },
        el('span', { class: 'state' }, c.healthy ? '✔ ok' : '✖ DOWN'),
        ` ${c.name} `,
        el('span', { class: 'detail' }, `${c.role}: ${c.detail}`),
      ),
    ),
  );
  $('problems').replaceChildren(...sample.problems.map((problem) => el('li', {}, problem)));
}

// Charts: polylines over the last HISTORY samples, scaled to the largest value shown.
const SVG = 'http://www.w3.org/2000/svg';
function chart(svg, series) {
  const width = 300;
  const height = 80;
  const top = 10;
  const max = Math.max(1, ...series.flatMap((s) => s.values.filter((v) => v !== null)));
  const x = (i) => (i / (HISTORY - 1)) * width;
  const y = (v) => height - 2 - (v / max) * (height - top - 2);
  const nodes = series.map((s) => {
    const offset = HISTORY - s.values.length;
    const points = s.values.map((v, i) => (v === null ? null : `${x(i + offset).toFixed(1)},${y(v).toFixed(1)}`)).filter(Boolean);
    const line = document.createElementNS(SVG, 'polyline');
    line.setAttribute('class', s.className);
    line.setAttribute('points', points.join(' '));
    return line;
  });
  const label = document.createElementNS(SVG, 'text');
  label.setAttribute('x', '2');
  label.setAttribute('y', '8');
  label.textContent = `max ${rate(max)}`;
  svg.replaceChildren(label, ...nodes);
}

function draw() {
  chart($('chart-rates'), [
    { className: 'accepted', values: samples.map((s) => s.acceptedPerSecond) },
    { className: 'applied', values: samples.map((s) => s.appliedPerSecond) },
  ]);
  chart($('chart-backlog'), [
    { className: 'outbox', values: samples.map((s) => (s.outbox ? s.outbox.pending : null)) },
    { className: 'lag', values: samples.map((s) => s.totalLag) },
  ]);
}

// Add and lookup -------------------------------------------------------------------------------

async function getJson(url, init) {
  const response = await fetch(url, init);
  let body;
  try {
    body = await response.json();
  } catch {
    body = { error: { message: `HTTP ${response.status} with no JSON` } };
  }
  return { ok: response.ok, status: response.status, body };
}

const errorText = (result) => `Error (HTTP ${result.status}): ${result.body?.error?.message ?? 'unknown error'}`;

$('add-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const requestId = $('request-id').value.trim();
  const body = { num1: $('num1').value.trim(), num2: $('num2').value.trim(), ...(requestId ? { requestId } : {}) };
  const answer = $('add-answer');
  answer.textContent = 'Sending…';
  try {
    const result = await getJson('/console/sums', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    if (!result.ok) {
      answer.replaceChildren(el('span', { class: 'error' }, errorText(result)));
      return;
    }
    answer.replaceChildren(
      `Sum ${result.body.sum} under request id ${result.body.requestId}. `,
      el('span', { class: 'replayed', 'data-replayed': String(result.body.replayed) }, result.body.replayed ? 'replayed: the original answer, not counted again' : 'accepted: new'),
    );
    $('lookup-id').value = result.body.requestId;
  } catch (error) {
    answer.replaceChildren(el('span', { class: 'error' }, `Error: ${error.message}`));
  }
});

const STAGES = [
  ['accepted', 'accepted'],
  ['in-outbox', 'in the outbox'],
  ['published', 'published to Kafka'],
  ['applied', 'applied to the total'],
];

$('lookup-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const target = $('lookup-answer');
  target.textContent = 'Looking up…';
  const result = await getJson(`/console/requests/${encodeURIComponent($('lookup-id').value)}`).catch((error) => ({ ok: false, status: 0, body: { error: { message: error.message } } }));
  if (!result.ok) {
    target.replaceChildren(el('span', { class: 'error' }, errorText(result)));
    return;
  }
  const trace = result.body;
  const reached = STAGES.findIndex(([stage]) => stage === trace.stage);
  const details = [];
  if (trace.accepted) details.push(`sum ${trace.accepted.sum} (${trace.accepted.num1} + ${trace.accepted.num2}), accepted ${trace.accepted.acceptedAt}, event ${trace.accepted.eventId}`);
  if (trace.outbox) details.push(`in the outbox since ${trace.outbox.createdAt}; ${trace.outbox.attempts} failed attempts${trace.outbox.parked ? ', PARKED' : ''}${trace.outbox.lastError ? `; last error: ${trace.outbox.lastError}` : ''}`);
  if (trace.stage === 'published') details.push('Kafka has it; the totals service has not applied it yet');
  if (trace.applied) details.push(`published at partition ${trace.applied.partition}, offset ${trace.applied.offset}; applied ${trace.applied.appliedAt}`);
  target.replaceChildren(
    el('p', { 'data-stage': trace.stage }, trace.stage === 'unknown' ? `No request with id ${trace.requestId} was accepted.` : `Request ${trace.requestId}:`),
    el(
      'ol',
      { class: 'stages', 'aria-label': 'stages' },
      STAGES.map(([stage, label], index) => el('li', { class: reached >= index ? 'reached' : '' }, label)),
    ),
    ...details.map((line) => el('p', {}, line)),
    ...trace.problems.map((problem) => el('p', { class: 'error' }, problem)),
  );
});

// Topic browser --------------------------------------------------------------------------------

async function loadTopics() {
  const target = $('topics');
  target.textContent = 'Loading…';
  const result = await getJson('/console/topics').catch((error) => ({ ok: false, status: 0, body: { error: { message: error.message } } }));
  if (!result.ok) {
    target.replaceChildren(el('p', { class: 'error' }, errorText(result)));
    return;
  }
  const view = result.body;
  const select = $('records-topic');
  const chosen = select.value;
  select.replaceChildren(...view.topics.map((t) => el('option', { value: t.name }, t.name)));
  if (chosen) select.value = chosen;
  target.replaceChildren(
    el('p', {}, `Brokers: ${view.brokers.map((b) => `${b.id} (${b.host}:${b.port})${b.id === view.controllerId ? ' controller' : ''}`).join(', ')}. Group ${view.group}.`),
    ...view.topics.map((topic) =>
      el(
        'div',
        { class: 'scroll' },
        el(
          'table',
          { 'data-topic': topic.name },
          el('caption', {}, `${topic.name} (${topic.partitions.length} partitions)`),
          el('thead', {}, el('tr', {}, ['Partition', 'Leader', 'Replicas', 'In sync', 'Earliest', 'End', 'Committed', 'Lag'].map((h) => el('th', { scope: 'col' }, h)))),
          el(
            'tbody',
            {},
            topic.partitions.map((p) =>
              el(
                'tr',
                {},
                [p.partition, p.leader, p.replicas.join(','), p.isr.join(','), p.earliest ?? '?', p.end ?? '?', p.committed ?? '–', p.lag ?? '–'].map((v) => el('td', {}, v)),
              ),
            ),
          ),
        ),
      ),
    ),
  );
}

$('topics-refresh').addEventListener('click', loadTopics);

$('records-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const topic = $('records-topic').value;
  const partition = $('records-partition').value.trim();
  const target = $('records');
  target.textContent = 'Loading…';
  const result = await getJson(`/console/topics/${encodeURIComponent(topic)}/partitions/${encodeURIComponent(partition)}/records?limit=20`).catch((error) => ({
    ok: false,
    status: 0,
    body: { error: { message: error.message } },
  }));
  if (!result.ok) {
    target.replaceChildren(el('p', { class: 'error' }, errorText(result)));
    return;
  }
  const records = result.body.records;
  target.replaceChildren(
    records.length === 0
      ? el('p', {}, `No records in ${topic} partition ${partition}.`)
      : el(
          'div',
          { class: 'scroll' },
          el(
            'table',
            { id: 'records-table' },
            el('caption', {}, `Latest ${records.length} records of ${topic} partition ${partition}, newest first`),
            el('thead', {}, el('tr', {}, ['Offset', 'Time', 'Key', 'Headers', 'Value'].map((h) => el('th', { scope: 'col' }, h)))),
            el(
              'tbody',
              {},
              records.map((r) =>
                el(
                  'tr',
                  { 'data-key': r.key ?? '' },
                  el('td', {}, r.offset),
                  el('td', {}, r.timestamp),
                  el('td', {}, r.key ?? '(none)'),
                  el('td', {}, el('pre', {}, Object.entries(r.headers).map(([k, v]) => `${k}: ${v}`).join('\n'))),
                  el(
                    'td',
                    {},
                    r.reason ? el('p', { class: 'error' }, `reason: ${r.reason}`) : null,
                    el('pre', {}, 'error' in r.decoded ? `${r.valueEncoding === 'base64' ? 'base64 ' : ''}${r.value}\n(not an event: ${r.decoded.error})` : JSON.stringify(r.decoded, null, 1)),
                  ),
                ),
              ),
            ),
          ),
        ),
  );
});

async function loadDeadLetters() {
  const target = $('dead-letters');
  target.textContent = 'Loading…';
  const result = await getJson('/console/dead-letters').catch((error) => ({ ok: false, status: 0, body: { error: { message: error.message } } }));
  if (!result.ok) {
    target.replaceChildren(el('p', { class: 'error' }, errorText(result)));
    return;
  }
  const listing = result.body;
  target.replaceChildren(
    el('p', {}, `${listing.parked} parked, ${listing.replayed} replayed (summa dlq replays them).`),
    listing.records.length === 0
      ? el('p', {}, 'No record was rejected.')
      : el(
          'div',
          { class: 'scroll' },
          el(
            'table',
            {},
            el('thead', {}, el('tr', {}, ['Record', 'Reason', 'Key', 'Payload', 'Rejected', 'Replayed'].map((h) => el('th', { scope: 'col' }, h)))),
            el(
              'tbody',
              {},
              listing.records.map((r) => el('tr', {}, [r.id, r.reason, r.key ?? '(none)', r.payload, r.rejectedAt, r.replayedAt ?? 'no'].map((v) => el('td', {}, v)))),
            ),
          ),
        ),
  );
}

$('dead-letters-refresh').addEventListener('click', loadDeadLetters);

connect();
void loadTopics();
void loadDeadLetters();
