<?php
/*
 * A Simpul client in PHP 8 written from docs/wire-format.md alone, with nothing but php-cli
 * (ext-sodium, ext-json): a minimal RESP client over a plain socket (stream_socket_client); the
 * documentation's own PHP functions (the event id of section 2.1, the signed bytes, signing and
 * verification of section 10.5, the comparison with the original of 11.4), which the test writes
 * into one file given as the first argument; publishing into the producer's intake (sections 3.1
 * and 4), the refusals the producer reads in its intake's dead letters (section 3.1), reading
 * inboxes as a consumer group (section 5), decoding (section 2), verifying (sections 10.4 and
 * 11.3) and dead-lettering (section 6) their entries.
 *
 * Usage: php RoutedClient.php <wire_format.php> < config.json. It prints one JSON object of what
 * it saw; the test (tests/bus/test_php_routed.py) asserts on it. Exit status 0 unless a step broke.
 */

declare(strict_types=1);

require $argv[1];

// ------------------------------------------------------------------ RESP over a plain socket

/** An error reply (`-NOPERM ...`): a value, so that refusals can be reported. */
final class RedisError
{
    public function __construct(public string $message)
    {
    }
}

final class Resp
{
    /** @var resource */
    private $socket;

    public function __construct(int $port, string $user, string $password)
    {
        $socket = stream_socket_client("tcp://127.0.0.1:$port", $errno, $errstr, 10);
        if ($socket === false) {
            throw new RuntimeException("connect to 127.0.0.1:$port: $errstr");
        }
        stream_set_timeout($socket, 30);
        $this->socket = $socket;
        $auth = $this->call('AUTH', $user, $password);
        if ($auth !== 'OK') {
            throw new RuntimeException("AUTH $user: " . ($auth instanceof RedisError ? $auth->message : 'no OK'));
        }
    }

    public function call(string ...$args): mixed
    {
        $request = '*' . count($args) . "\r\n";
        foreach ($args as $arg) {
            $request .= '$' . strlen($arg) . "\r\n" . $arg . "\r\n";
        }
        for ($sent = 0; $sent < strlen($request); $sent += $n) {
            $n = fwrite($this->socket, substr($request, $sent));
            if ($n === false || $n === 0) {
                throw new RuntimeException('write to Redis failed');
            }
        }
        return $this->read();
    }

    private function read(): mixed
    {
        $line = fgets($this->socket);
        if ($line === false) {
            throw new RuntimeException('connection closed or timed out');
        }
        $kind = $line[0];
        $rest = substr($line, 1, -2);
        switch ($kind) {
            case '+':
                return $rest;
            case '-':
                return new RedisError($rest);
            case ':':
                return (int) $rest;
            case '$':
                $length = (int) $rest;
                if ($length < 0) {
                    return null;
                }
                $bulk = '';
                while (strlen($bulk) < $length + 2) {
                    $chunk = fread($this->socket, $length + 2 - strlen($bulk));
                    if ($chunk === false || $chunk === '') {
                        throw new RuntimeException('connection closed in a bulk string');
                    }
                    $bulk .= $chunk;
                }
                return substr($bulk, 0, $length);
            case '*':
                $count = (int) $rest;
                if ($count < 0) {
                    return null;
                }
                $items = [];
                for ($i = 0; $i < $count; $i++) {
                    $items[] = $this->read();
                }
                return $items;
        }
        throw new RuntimeException('unexpected RESP reply ' . json_encode($line));
    }

    public function close(): void
    {
        fclose($this->socket);
    }
}

/** A reply as JSON can carry it: an error becomes {"error": "..."}. */
function shown(mixed $reply): mixed
{
    if ($reply instanceof RedisError) {
        return ['error' => $reply->message];
    }
    return is_array($reply) ? array_map('shown', $reply) : $reply;
}

// ------------------------------------------------------------------ section 2: decoding

final class Undecodable extends RuntimeException
{
}

const REQUIRED = ['specversion', 'id', 'source', 'type', 'time', 'datacontenttype', 'dataschema', 'data'];
const OPTIONAL = ['subject', 'correlationid', 'causationid', 'traceparent', 'signature', 'signer'];
const TYPE_PATTERN = '/^[a-z][a-z0-9_-]*\.[a-z][a-z0-9_-]*\.[a-z][a-z0-9_-]*\.v[1-9][0-9]*$/';
const DATASCHEMA_PATTERN = '/^simpul:([a-z][a-z0-9_.-]*):([1-9][0-9]*)\.([0-9]+)$/';
const TIME_PATTERN = '/^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})$/';

/**
 * An entry's field list (name, value, name, value, ...) decoded by section 2, in the order the
 * section gives: name => value, or Undecodable with what is wrong (names, never values).
 */
function decode(array $flat): array
{
    $fields = [];
    for ($i = 0; $i + 1 < count($flat); $i += 2) {
        $name = (string) $flat[$i];
        if (array_key_exists($name, $fields)) {
            throw new Undecodable("field $name repeated");
        }
        $fields[$name] = (string) $flat[$i + 1];
    }
    foreach ($fields as $name => $value) {
        // php-cli has no mbstring: PCRE's /u refuses a subject that is not UTF-8
        if (preg_match('//u', (string) $name) !== 1 || preg_match('//u', $value) !== 1) {
            throw new Undecodable("field $name is not UTF-8");
        }
    }
    foreach (REQUIRED as $name) {
        if (($fields[$name] ?? '') === '') {
            throw new Undecodable("required field $name missing or empty");
        }
    }
    if ($fields['specversion'] !== '1.0') {
        throw new Undecodable('specversion is not 1.0');
    }
    if ($fields['datacontenttype'] !== 'application/json') {
        throw new Undecodable('datacontenttype is not application/json');
    }
    if (preg_match_all('/./us', $fields['id']) > 256) {  // code points
        throw new Undecodable('id longer than 256 characters');
    }
    if (!preg_match(TYPE_PATTERN, $fields['type'])) {
        throw new Undecodable('type does not match the pattern');
    }
    [, $typeName, $typeMajor] = type_parts($fields['type']);
    if (!preg_match(DATASCHEMA_PATTERN, $fields['dataschema'], $schema)
        || $schema[1] !== $typeName || $schema[2] !== $typeMajor) {
        throw new Undecodable('dataschema does not match type');
    }
    if (rfc3339($fields['time']) === null) {
        throw new Undecodable('time is not RFC 3339 with seconds and an offset');
    }
    foreach (array_keys($fields) as $name) {
        $name = (string) $name;
        if (!in_array($name, REQUIRED, true) && !in_array($name, OPTIONAL, true)
            && !preg_match('/^[a-z0-9]{1,20}$/', $name)) {
            throw new Undecodable("field name $name is not allowed");
        }
    }
    return $fields;
}

/** `dukcapil.citizen.died.v1` -> ['dukcapil.citizen', 'dukcapil.citizen.died', '1']. */
function type_parts(string $type): array
{
    $segments = explode('.', $type);
    return [
        $segments[0] . '.' . $segments[1],
        $segments[0] . '.' . $segments[1] . '.' . $segments[2],
        substr($segments[3], 1),
    ];
}

/** Section 2.2: milliseconds since the epoch, or null when the text is not such a time. */
function rfc3339(?string $text): ?int
{
    if ($text === null || !preg_match(TIME_PATTERN, $text, $m)) {
        return null;
    }
    if (!checkdate((int) $m[2], (int) $m[3], (int) $m[1]) || (int) $m[4] > 23 || (int) $m[5] > 59
        || (int) $m[6] > 59) {
        return null;  // no leap second (:60), no 24:00
    }
    $offset = $m[8] === 'Z' ? '+00:00' : $m[8];
    $at = DateTimeImmutable::createFromFormat('!Y-m-d\TH:i:sP', "$m[1]-$m[2]-$m[3]T$m[4]:$m[5]:$m[6]$offset");
    if ($at === false) {
        return null;
    }
    $millis = isset($m[7]) && $m[7] !== '' ? (int) substr(str_pad(substr($m[7], 1), 3, '0'), 0, 3) : 0;
    return $at->getTimestamp() * 1000 + $millis;
}

// ------------------------------------------------------------------ section 10.4: the keyring

const MAX_AGE_MS = 7 * 24 * 3600 * 1000;  // SIMPUL_SIGNATURE_MAX_AGE_S default
const MAX_SKEW_MS = 300 * 1000;  // SIMPUL_SIGNATURE_MAX_SKEW_S default

/**
 * The checks of section 10.4 in their order: 'valid', or the dead-letter reason. $keyring maps a
 * key id to ['public_key' => ..., 'types' => [...] or null for every type, 'not_before' =>
 * ..., 'not_after' => ...]; $entryId is the entry's id in the stream it was read from.
 */
function verdict(array $fields, string $entryId, array $keyring): string
{
    if (($fields['signature'] ?? '') === '') {
        return 'unsigned';
    }
    $key = $keyring[$fields['signer'] ?? ''] ?? null;
    if ($key === null) {
        return 'unknown_signer';
    }
    if ($key['types'] !== null && !in_array($fields['type'], $key['types'], true)) {
        return 'signer_not_allowed';
    }
    $signedAt = rfc3339($fields['signedat'] ?? null);
    if ($signedAt === null || !simpul_signature_valid($fields, $key['public_key'])) {
        return 'bad_signature';
    }
    $arrival = (int) explode('-', $entryId)[0];
    $notBefore = rfc3339($key['not_before'] ?? null);
    $notAfter = rfc3339($key['not_after'] ?? null);
    if (($notBefore !== null && $signedAt < $notBefore)
        || ($notAfter !== null && ($signedAt >= $notAfter || $arrival >= $notAfter))) {
        return 'signer_expired';
    }
    $age = $arrival - $signedAt;
    if ($age > MAX_AGE_MS || -$age > MAX_SKEW_MS) {
        return 'stale_event';
    }
    return 'valid';
}

// ------------------------------------------------------------------ sections 3.1, 4, 5 and 6

const SOURCE = 'urn:malangkota:dukcapil:siak';
const DEDUPE_WINDOW_MS = '604800000';
const AGGREGATE = 'dukcapil.citizen';

function now_rfc3339(): string
{
    return (new DateTimeImmutable('now', new DateTimeZone('UTC')))->format('Y-m-d\TH:i:s.v\Z');
}

/** An event of section 2, unsigned; `data` is the JSON text exactly as it will be stored. */
function event(string $id, string $type, string $data): array
{
    [, $name, $major] = type_parts($type);
    return [
        'specversion' => '1.0',
        'id' => $id,
        'source' => SOURCE,
        'type' => $type,
        'time' => now_rfc3339(),
        'datacontenttype' => 'application/json',
        'dataschema' => "simpul:$name:$major.0",
        'correlationid' => $id,
        'data' => $data,
    ];
}

final class Client
{
    /** @var array<string, mixed> what the client saw, printed as JSON at the end */
    public array $seen = [];

    public function __construct(private array $config)
    {
    }

    private function connect(string $role): Resp
    {
        $who = $this->config[$role];
        return new Resp((int) $this->config['port'], $who['user'], $who['password']);
    }

    private function intake(): string
    {
        return 'simpul:intake:{' . $this->config['producer']['user'] . '}';
    }

    private function deadline(): float
    {
        return microtime(true) + $this->config['waitMs'] / 1000;
    }

    /** `FCALL simpul_1_publish` into the producer's own intake (sections 3.1 and 4). */
    private function publish(Resp $producer, array $fields): mixed
    {
        $intake = $this->intake();
        $args = ['FCALL', 'simpul_1_publish', '2', $intake, "$intake:seen:{$fields['id']}", DEDUPE_WINDOW_MS, ''];
        foreach ($fields as $name => $value) {
            array_push($args, (string) $name, $value);
        }
        return shown($producer->call(...$args));
    }

    /**
     * The producer's intake dead letters (section 3.1), read until the refusal of every intake
     * entry in $entryIds (what its publish answered) is there: dlq.entry => the dead letter.
     */
    private function refusals(Resp $producer, array $entryIds): array
    {
        $deadline = $this->deadline();
        do {
            $reply = $producer->call('XRANGE', $this->intake() . ':dlq', '-', '+');
            if ($reply instanceof RedisError) {
                throw new RuntimeException('XRANGE of the intake dead letters: ' . $reply->message);
            }
            $byEntry = [];
            foreach ($reply as [, $flat]) {
                $fields = [];
                for ($i = 0; $i + 1 < count($flat); $i += 2) {
                    $fields[$flat[$i]] = $flat[$i + 1];
                }
                $byEntry[$fields['dlq.entry']] = $fields;
            }
            if (!array_diff($entryIds, array_keys($byEntry))) {
                return $byEntry;
            }
            usleep(100_000);
        } while (microtime(true) < $deadline);
        throw new RuntimeException('refusals missing from the intake dead letters: ' . json_encode(array_keys($byEntry)));
    }

    /**
     * Section 5: create the group, re-read this consumer's own pending entries, then read new
     * ones until the entries of every wanted event id came. Returns event id => [entry id, fields].
     */
    private function readInbox(Resp $service, string $role, array $wanted): array
    {
        $group = $this->config[$role]['group'];
        $inbox = 'simpul:inbox:{' . $group . '/' . AGGREGATE . '}';
        $consumer = "$group-php-1";
        $created = $service->call('XGROUP', 'CREATE', $inbox, $group, '0', 'MKSTREAM');
        $this->seen["$role.group"] = shown($created);
        $found = [];
        $from = '0';  // own pending first (step 3), then new entries (step 4)
        $deadline = $this->deadline();
        while (array_diff($wanted, array_keys($found)) && microtime(true) < $deadline) {
            $reply = $from === '>'
                ? $service->call('XREADGROUP', 'GROUP', $group, $consumer, 'COUNT', '100', 'BLOCK', '2000', 'STREAMS', $inbox, '>')
                : $service->call('XREADGROUP', 'GROUP', $group, $consumer, 'COUNT', '100', 'STREAMS', $inbox, $from);
            if ($reply instanceof RedisError) {
                throw new RuntimeException("XREADGROUP $inbox: $reply->message");
            }
            $entries = $reply === null ? [] : $reply[0][1];
            if ($from !== '>' && !$entries) {
                $from = '>';
                continue;
            }
            foreach ($entries as [$entryId, $flat]) {
                if ($from !== '>') {
                    $from = $entryId;
                }
                $fields = decode($flat);
                $found[$fields['id']] = [$entryId, $fields];
            }
        }
        if (array_diff($wanted, array_keys($found))) {
            throw new RuntimeException("$group: inbox entries missing, got " . json_encode(array_keys($found)));
        }
        return $found;
    }

    /** `FCALL simpul_1_deadletter` (section 6) on an inbox: acks the entry and adds its dead letter. */
    private function deadLetter(Resp $service, string $role, array $entry, string $reason, string $error): mixed
    {
        $group = $this->config[$role]['group'];
        $inbox = 'simpul:inbox:{' . $group . '/' . AGGREGATE . '}';
        [$entryId, $fields] = $entry;
        $args = ['FCALL', 'simpul_1_deadletter', '2', $inbox, "$inbox:dlq:$group", $group, $entryId];
        foreach ($fields as $name => $value) {
            array_push($args, (string) $name, $value);
        }
        array_push(
            $args,
            'dlq.reason', $reason,
            'dlq.error', $error,
            'dlq.attempts', '1',
            'dlq.stream', $inbox,
            'dlq.entry', $entryId,
            'dlq.group', $group,
            'dlq.consumer', "$group-php-1",
            'dlq.time', now_rfc3339()
        );
        return shown($service->call(...$args));
    }

    /** Section 5, step 5: one XACK for every entry read (handled, or a type not handled here). */
    private function ackAll(Resp $service, string $role, array $read): mixed
    {
        $group = $this->config[$role]['group'];
        $inbox = 'simpul:inbox:{' . $group . '/' . AGGREGATE . '}';
        return shown($service->call('XACK', $inbox, $group, ...array_column($read, 0)));
    }

    /** The topology's keys as section 10.4 reads them; the router's may sign every type. */
    private function keyring(): array
    {
        $producer = $this->config['producer'];
        $router = $this->config['router'];
        return [
            $producer['keyId'] => [
                'public_key' => $producer['publicKey'],
                'types' => $producer['types'],
                'not_before' => $producer['notBefore'],
                'not_after' => null,
            ],
            $router['keyId'] => [
                'public_key' => $router['publicKey'],
                'types' => null,
                'not_before' => $router['notBefore'],
                'not_after' => null,
            ],
        ];
    }

    /** The worked examples of sections 2.1, 10.5 and 11.4 through the documentation's PHP. */
    private function vectors(): array
    {
        $v = $this->config['vectors'];
        $original = $v['original'];
        $bytes = simpul_signed_bytes($original);
        $seed = base64_decode($v['seed'], true);
        $keyPair = sodium_crypto_sign_seed_keypair($seed);
        $altered = array_merge($original, ['time' => '2026-11-28T13:07:26.124Z']);
        $resigned = simpul_sign($original, $original['signer'], $seed);
        $inbox = $v['inbox'];
        $alteredInbox = array_merge($inbox, ['data' => '{"date_of_death":"2026-11-26","kecamatan":"35.73.02"}']);
        $shortSignature = array_merge($original, ['signature' => base64_encode('short')]);
        // A libsodium secret key file (seed then public key), as section 10.3 says is read too.
        $sodiumFile = tempnam(sys_get_temp_dir(), 'simpul-key');
        file_put_contents($sodiumFile, base64_encode(sodium_crypto_sign_secretkey($keyPair)) . "\n");
        $sodiumSeed = simpul_signing_seed($sodiumFile);
        unlink($sodiumFile);
        return [
            'eventId' => simpul_event_id('urn:malangkota:dukcapil:siak', 'kematian', '4711', '1'),
            'signedBytes' => strlen($bytes) . ' bytes, SHA-256 ' . hash('sha256', $bytes),
            'publicKey' => base64_encode(sodium_crypto_sign_publickey($keyPair)),
            'signature' => base64_encode(sodium_crypto_sign_detached($bytes, sodium_crypto_sign_secretkey($keyPair))),
            'originalValid' => simpul_signature_valid($original, $v['publicKey']),
            'alteredValid' => simpul_signature_valid($altered, $v['publicKey']),
            'shortSignatureValid' => simpul_signature_valid($shortSignature, $v['publicKey']),
            'signedWithSeedValid' => simpul_signature_valid($resigned, $v['publicKey']),
            'resignedSignedat' => $resigned['signedat'],
            'sodiumSeedSame' => $sodiumSeed === $seed,
            'inboxValid' => simpul_signature_valid($inbox, $v['routerPublicKey']),
            'inboxWithProducerKeyValid' => simpul_signature_valid($inbox, $v['publicKey']),
            'inboxSignedBytes' => strlen(simpul_signed_bytes($inbox)) . ' bytes, SHA-256 '
                . hash('sha256', simpul_signed_bytes($inbox)),
            'inboxMatchesOriginal' => simpul_matches_original($inbox, $original),
            'alteredInboxMatchesOriginal' => simpul_matches_original($alteredInbox, $original),
        ];
    }

    public function run(): void
    {
        $this->seen['vectors'] = $this->vectors();
        $producerConfig = $this->config['producer'];
        $keyId = $producerConfig['keyId'];
        $seed = simpul_signing_seed($producerConfig['keyFile']);  // section 10.5, as a producer reads it

        $diedId = simpul_event_id(SOURCE, 'kematian', '4711', '1');
        $bornId = simpul_event_id(SOURCE, 'kelahiran', '815', '1');
        $movedId = simpul_event_id(SOURCE, 'pindah', '2024', '1');
        $wrongTypeId = simpul_event_id(SOURCE, 'kartu-keluarga', '99', '1');
        $tamperedId = simpul_event_id(SOURCE, 'kematian', '4712', '1');
        $tooLargeId = simpul_event_id(SOURCE, 'kematian', '4713', '1');

        $died = simpul_sign(event($diedId, 'dukcapil.citizen.died.v1',
            '{"nik":"3573014107900001","date_of_death":"2026-11-27","kecamatan":"35.73.02"}'), $keyId, $seed);
        // Not compact on purpose: a projection rewrites `data` compact (section 11.2).
        $born = simpul_sign(event($bornId, 'dukcapil.citizen.born.v1',
            '{"child_ref": "abcdefghijklmnopqrstuvwxyz", "nik": "3573016011260001", "kk": "3573010101260002", '
            . '"born_on": "2026-11-20", "kelurahan": "35.73.02.1001", "registered_on": "2026-11-27"}'), $keyId, $seed);
        // An escaped non-ASCII character, an escaped slash and spaces (section 11.2).
        $moved = simpul_sign(event($movedId, 'dukcapil.citizen.moved.v1',
            '{"nik": "3573014107900003", "address": "Jl. Ijen No. 5 \u2014 Klojen, RT 01\/RW 02", '
            . '"kecamatan": "35.73.02", "moved_on": "2026-11-25"}'), $keyId, $seed);
        // A type the producer's principal may not publish: refused as type_not_allowed.
        $wrongType = simpul_sign(event($wrongTypeId, 'dukcapil.family.card-issued.v1', '{}'), $keyId, $seed);
        // Altered after signing: refused as bad_signature.
        $tampered = simpul_sign(event($tamperedId, 'dukcapil.citizen.died.v1',
            '{"nik":"3573014107900002","date_of_death":"2026-11-27","kecamatan":"35.73.02"}'), $keyId, $seed);
        $tampered['data'] = str_replace('35.73.02', '35.73.05', $tampered['data']);
        $this->seen['signed'] = $died;
        $this->seen['signedBorn'] = $born;
        $this->seen['signedMoved'] = $moved;

        $producer = $this->connect('producer');
        $intake = $this->intake();
        $this->seen['version'] = shown($producer->call('FCALL', 'simpul_1_version', '0'));
        $this->seen['departmentXadd'] = shown($producer->call('XADD', 'simpul:{' . AGGREGATE . '}', '*', 'id', 'x'));
        $this->seen['departmentRange'] = shown($producer->call('XRANGE', 'simpul:{' . AGGREGATE . '}', '-', '+'));
        // Section 4's own example published the death unsigned (the test ran it with phpredis):
        // refused, its marker deleted, so the signed death goes in under the same id (3.1).
        $exampleEntry = $this->config['exampleEntry'];
        $this->seen['unsignedRefusal'] = $this->refusals($producer, [$exampleEntry])[$exampleEntry];
        $this->seen['unsignedMarker'] = shown($producer->call('GET', "$intake:seen:$diedId"));
        $this->seen['published'] = $this->publish($producer, $died);
        $this->seen['again'] = $this->publish($producer, $died);
        $this->seen['publishedBorn'] = $this->publish($producer, $born);
        $this->seen['publishedMoved'] = $this->publish($producer, $moved);
        $this->seen['publishedWrongType'] = $this->publish($producer, $wrongType);
        $this->seen['publishedTampered'] = $this->publish($producer, $tampered);
        // Over the router's 65,536 bytes (the function's cap is 1 MiB): refused as too_large,
        // without the event's fields, so found by its intake entry id (section 3.1).
        $tooLarge = simpul_sign(event($tooLargeId, 'dukcapil.citizen.died.v1', json_encode(
            ['nik' => '3573014107900004', 'date_of_death' => '2026-11-27', 'kecamatan' => '35.73.02',
             'note' => str_repeat('x', 70_000)]
        )), $keyId, $seed);
        $this->seen['publishedTooLarge'] = $this->publish($producer, $tooLarge);
        $refusedEntries = [
            $this->seen['publishedWrongType'][1],
            $this->seen['publishedTampered'][1],
            $this->seen['publishedTooLarge'][1],
        ];
        $refused = $this->refusals($producer, $refusedEntries);
        $this->seen['refusals'] = array_intersect_key($refused, array_flip($refusedEntries));
        $this->seen['tooLargeMarker'] = shown($producer->call('GET', "$intake:seen:$tooLargeId"));
        $this->seen['refusalsLength'] = shown($producer->call('XLEN', "$intake:dlq"));
        // What else section 3.1 says a producer's credentials reach, and do not.
        $this->seen['refusalsXadd'] = shown($producer->call('XADD', "$intake:dlq", '*', 'id', 'x'));
        $this->seen['refusalsTrim'] = shown($producer->call('XTRIM', "$intake:dlq", 'MAXLEN', '0'));
        $this->seen['refusalsDelete'] = shown($producer->call('XDEL', "$intake:dlq", $refusedEntries[0]));
        $this->seen['refusalsNewest'] = shown($producer->call('XREVRANGE', "$intake:dlq", '+', '-', 'COUNT', '1'));
        $this->seen['otherRefusals'] = shown($producer->call('XRANGE', 'simpul:intake:{adapter-bapenda}:dlq', '-', '+'));
        $this->seen['intakeRange'] = shown($producer->call('XRANGE', $intake, '-', '+'));
        $this->seen['intakeLength'] = shown($producer->call('XLEN', $intake));
        $this->seen['admittedMarker'] = shown($producer->call('GET', "$intake:seen:$diedId"));
        $this->seen['refusedMarker'] = shown($producer->call('GET', "$intake:seen:$tamperedId"));
        // Corrected and signed anew (section 10.3: a new `signedat`), under the same id.
        $corrected = simpul_sign(array_merge($tampered, [
            'data' => '{"nik":"3573014107900002","date_of_death":"2026-11-27","kecamatan":"35.73.02"}',
        ]), $keyId, $seed);
        $this->seen['republished'] = $this->publish($producer, $corrected);
        $this->seen['signedCorrected'] = $corrected;
        $producer->close();

        $keyring = $this->keyring();
        $routerKeyId = $this->config['router']['keyId'];

        // dinsos: projections signed by the router; one given up into its dead letters.
        $service = $this->connect('service');
        $group = $this->config['service']['group'];
        $inbox = 'simpul:inbox:{' . $group . '/' . AGGREGATE . '}';
        $this->seen['departmentRead'] = shown($service->call('XREADGROUP', 'GROUP', $group, 'c', 'COUNT', '1',
            'STREAMS', 'simpul:{' . AGGREGATE . '}', '>'));
        $this->seen['inboxRange'] = shown($service->call('XRANGE', $inbox, '-', '+'));
        $got = $this->readInbox($service, 'service', [$diedId, $bornId, $movedId, $tamperedId]);
        $this->seen['verdicts'] = [];
        foreach ($got as $id => [$entryId, $fields]) {
            $this->seen['verdicts'][$id] = verdict($fields, $entryId, $keyring);
        }
        $this->seen['dinsosMovedData'] = $got[$movedId][1]['data'];
        $this->seen['deadLetter'] = $this->deadLetter($service, 'service', $got[$bornId], 'given_up', 'not for this test');
        $this->seen['deadLetterAgain'] = $this->deadLetter($service, 'service', $got[$bornId], 'given_up', 'twice');
        unset($got[$bornId]);
        [$entryId, $fields] = $got[$diedId];
        $this->seen['entry'] = $fields;
        $this->seen['projected'] = array_key_exists('origindigest', $fields);
        $this->seen['routerSigned'] = $fields['signer'] === $routerKeyId;
        $this->seen['validWithProducerKey'] = simpul_signature_valid($fields, $producerConfig['publicKey']);
        $this->seen['matchesOriginal'] = simpul_matches_original($fields, $died);
        $this->seen['correctedMatchesOriginal'] = simpul_matches_original($got[$tamperedId][1], $corrected);
        $altered = array_merge($fields, ['data' => str_replace('2026-11-27', '2026-11-26', $fields['data'])]);
        $this->seen['alteredVerdict'] = verdict($altered, $entryId, $keyring);
        $this->seen['otherOriginVerdict'] = verdict(array_merge($fields, ['originentry' => '1-0']), $entryId, $keyring);
        $this->seen['read'] = count($got);
        // The handler "fails" on the move: it stays pending (section 5, step 5); the retry sweep
        // claims it (step 6) and the claim counts a second delivery (step 7); then it succeeds.
        $failed = $got[$movedId];
        unset($got[$movedId]);
        $this->seen['ack'] = $this->ackAll($service, 'service', $got);
        $this->seen['pendingAfterFailure'] = shown($service->call('XPENDING', $inbox, $group));
        $claimed = $service->call('XAUTOCLAIM', $inbox, $group, "$group-php-2", '0', '0-0', 'COUNT', '100');
        if ($claimed instanceof RedisError) {
            throw new RuntimeException("XAUTOCLAIM $inbox: $claimed->message");
        }
        $this->seen['claimedIds'] = array_column($claimed[1], 0);
        $this->seen['claimedSame'] = decode($claimed[1][0][1]) === $failed[1];
        $this->seen['deliveries'] = shown($service->call('XPENDING', $inbox, $group, $failed[0], $failed[0], '1'));
        $this->seen['retryAck'] = shown($service->call('XACK', $inbox, $group, $failed[0]));
        $this->seen['failedEntryId'] = $failed[0];
        $this->seen['pending'] = shown($service->call('XPENDING', $inbox, $group));
        $service->close();

        // dinkes: the birth without the NIK and the family card, compact, in the original order.
        $dinkes = $this->connect('projected');
        $got = $this->readInbox($dinkes, 'projected', [$bornId]);
        [$entryId, $fields] = $got[$bornId];
        $this->seen['bornEntry'] = $fields;
        $this->seen['bornVerdict'] = verdict($fields, $entryId, $keyring);
        $this->seen['bornMatchesOriginal'] = simpul_matches_original($fields, $born);
        $this->seen['bornRead'] = count($got);
        $this->seen['bornAck'] = $this->ackAll($dinkes, 'projected', $got);
        $dinkes->close();

        // bapenda: approved for every field of a move, yet a projection (11.2): `data` rewritten.
        $bapenda = $this->connect('listed');
        $got = $this->readInbox($bapenda, 'listed', [$movedId]);
        [$entryId, $fields] = $got[$movedId];
        $this->seen['movedEntry'] = $fields;
        $this->seen['movedVerdict'] = verdict($fields, $entryId, $keyring);
        $this->seen['movedMatchesOriginal'] = simpul_matches_original($fields, $moved);
        $this->seen['movedRead'] = count($got);
        $this->seen['movedAck'] = $this->ackAll($bapenda, 'listed', $got);
        $bapenda->close();

        // The audit: the original as admitted, verbatim, signed by the producer (11.2).
        $audit = $this->connect('audit');
        $got = $this->readInbox($audit, 'audit', [$diedId, $bornId, $movedId, $tamperedId]);
        [$entryId, $fields] = $got[$diedId];
        $this->seen['auditEntry'] = $fields;
        $this->seen['auditProjected'] = array_key_exists('origindigest', $fields);
        $this->seen['auditVerdict'] = verdict($fields, $entryId, $keyring);
        $this->seen['auditValidWithRouterKey'] = simpul_signature_valid($fields, $this->config['router']['publicKey']);
        $this->seen['auditAlteredVerdict'] = verdict(array_merge($fields, ['kecamatan' => '35.73.05']), $entryId, $keyring);
        $this->seen['auditRead'] = count($got);
        $this->seen['auditAck'] = $this->ackAll($audit, 'audit', $got);
        $audit->close();
    }
}

$client = new Client(json_decode(stream_get_contents(STDIN), true, 512, JSON_THROW_ON_ERROR));
$client->run();
echo json_encode($client->seen, JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE | JSON_THROW_ON_ERROR), "\n";
