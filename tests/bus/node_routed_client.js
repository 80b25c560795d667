// A client of the routed bus written from docs/wire-format.md alone (sections 3.1, 4, 5, 10
// and 11), with Node's built-in modules only. tests/bus/test_node_routed.py prepends the
// documentation's own snippets (simpulSignedBytes, simpulSignatureValid, simpulSign) and feeds
// it the connection details on standard input; it prints what it saw as JSON.
const net = require('node:net');

// The smallest RESP2 client that works: one connection, one command at a time.
class Resp {
  constructor(socket) {
    this.socket = socket;
    this.buffer = Buffer.alloc(0);
    this.waiting = [];
    socket.on('data', (chunk) => {
      this.buffer = Buffer.concat([this.buffer, chunk]);
      for (;;) {
        const parsed = Resp.parse(this.buffer, 0);
        if (parsed === null) break;
        this.buffer = this.buffer.subarray(parsed[1]);
        this.waiting.shift()(parsed[0]);
      }
    });
  }

  static connect(port) {
    return new Promise((resolve, reject) => {
      const socket = net.createConnection({ host: '127.0.0.1', port }, () => resolve(new Resp(socket)));
      socket.once('error', reject);
    });
  }

  // Returns [value, next offset], or null while the reply is incomplete. Errors are values
  // {error: text}, so that a test can look at a refusal.
  static parse(buffer, offset) {
    const end = buffer.indexOf('\r\n', offset);
    if (end < 0) return null;
    const kind = String.fromCharCode(buffer[offset]);
    const line = buffer.toString('utf8', offset + 1, end);
    if (kind === '+') return [line, end + 2];
    if (kind === '-') return [{ error: line }, end + 2];
    if (kind === ':') return [Number(line), end + 2];
    if (kind === '$') {
      const length = Number(line);
      if (length < 0) return [null, end + 2];
      if (buffer.length < end + 2 + length + 2) return null;
      return [buffer.toString('utf8', end + 2, end + 2 + length), end + 2 + length + 2];
    }
    if (kind === '*') {
      const count = Number(line);
      if (count < 0) return [null, end + 2];
      const items = [];
      let at = end + 2;
      for (let i = 0; i < count; i++) {
        const item = Resp.parse(buffer, at);
        if (item === null) return null;
        items.push(item[0]);
        at = item[1];
      }
      return [items, at];
    }
    throw new Error(`unexpected RESP type ${kind}`);
  }

  command(...args) {
    const parts = [`*${args.length}\r\n`];
    for (const arg of args) {
      const bytes = Buffer.from(String(arg), 'utf8');
      parts.push(`$${bytes.length}\r\n`, bytes, '\r\n');
    }
    return new Promise((resolve) => {
      this.waiting.push(resolve);
      this.socket.write(Buffer.concat(parts.map((p) => (Buffer.isBuffer(p) ? p : Buffer.from(p)))));
    });
  }

  close() {
    this.socket.end();
  }
}

function pairs(fields) {
  return Object.entries(fields).flat();
}

// Section 1: an entry is name/value pairs, and a repeated name is not an event.
function entryFields(flat) {
  const fields = {};
  for (let i = 0; i < flat.length; i += 2) {
    if (Object.prototype.hasOwnProperty.call(fields, flat[i])) throw new Error(`repeated ${flat[i]}`);
    fields[flat[i]] = flat[i + 1];
  }
  return fields;
}

async function authenticated(port, user, password) {
  const client = await Resp.connect(port);
  const ok = await client.command('AUTH', user, password);
  if (ok !== 'OK') throw new Error(`AUTH as ${user}: ${JSON.stringify(ok)}`);
  return client;
}

async function main() {
  const input = JSON.parse(require('node:fs').readFileSync(0, 'utf8'));
  const seen = {};

  // Publishing, routed (section 3.1): the producer signs (section 10) and writes its own intake.
  const producer = await authenticated(input.port, input.producer.user, input.producer.password);
  const fields = simpulSign({ ...input.event }, input.producer.keyId, input.producer.seed);
  seen.signed = fields;
  seen.departmentXadd = await producer.command('XADD', input.departmentStream, '*', ...pairs(fields));
  const intake = `simpul:intake:{${input.producer.user}}`;
  const publish = ['FCALL', 'simpul_1_publish', 2, intake, `${intake}:seen:${fields.id}`, '604800000', ''];
  seen.published = await producer.command(...publish, ...pairs(fields));
  seen.again = await producer.command(...publish, ...pairs(fields));
  producer.close();

  // Consuming, routed (sections 5 and 11): the service reads only its inbox.
  const service = await authenticated(input.port, input.service.user, input.service.password);
  const inbox = `simpul:inbox:{${input.service.group}/${input.aggregate}}`;
  seen.departmentRead = await service.command(
    'XREADGROUP', 'GROUP', input.service.group, 'node-1', 'COUNT', 1, 'STREAMS', input.departmentStream, '>');
  seen.group = await service.command('XGROUP', 'CREATE', inbox, input.service.group, '0', 'MKSTREAM');
  const deadline = Date.now() + input.waitMs;
  let reply = null;
  while (reply === null && Date.now() < deadline) {
    reply = await service.command(
      'XREADGROUP', 'GROUP', input.service.group, 'node-1', 'COUNT', 10, 'BLOCK', 500, 'STREAMS', inbox, '>');
    if (reply && reply.error) throw new Error(`XREADGROUP: ${reply.error}`);
  }
  if (reply === null) throw new Error(`nothing arrived in ${inbox}`);
  const [entryId, flat] = reply[0][1][0];
  const entry = entryFields(flat);
  seen.entryId = entryId;
  seen.entry = entry;
  seen.routerSigned = entry.signer === input.router.keyId;
  seen.valid = simpulSignatureValid(entry, input.router.publicKey);
  seen.validWithProducerKey = simpulSignatureValid(entry, input.producer.publicKey);
  const altered = { ...entry, data: entry.data.replace('35.73', '35.74') };
  seen.alteredValid = simpulSignatureValid(altered, input.router.publicKey);
  seen.matchesOriginal = simpulMatchesOriginal(entry, fields);
  seen.ack = await service.command('XACK', inbox, input.service.group, entryId);
  seen.pending = await service.command('XPENDING', inbox, input.service.group);
  service.close();

  // A subscription approved for every field (the audit) gets the original as admitted
  // (section 11.2): the producer's signature, checked with the producer's key.
  const audit = await authenticated(input.port, input.audit.user, input.audit.password);
  const auditInbox = `simpul:inbox:{${input.audit.group}/${input.aggregate}}`;
  await audit.command('XGROUP', 'CREATE', auditInbox, input.audit.group, '0', 'MKSTREAM');
  let got = null;
  while (got === null && Date.now() < deadline) {
    got = await audit.command(
      'XREADGROUP', 'GROUP', input.audit.group, 'node-1', 'COUNT', 10, 'BLOCK', 500, 'STREAMS', auditInbox, '>');
    if (got && got.error) throw new Error(`XREADGROUP: ${got.error}`);
  }
  if (got === null) throw new Error(`nothing arrived in ${auditInbox}`);
  const original = entryFields(got[0][1][0][1]);
  seen.auditEntry = original;
  seen.auditValid = simpulSignatureValid(original, input.producer.publicKey);
  seen.auditValidWithRouterKey = simpulSignatureValid(original, input.router.publicKey);
  audit.close();
  console.log(JSON.stringify(seen));
}

main().catch((error) => {
  console.error(error.stack || String(error));
  process.exit(1);
});
