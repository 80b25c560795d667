/*
 * A Simpul client in Java 17 written from docs/wire-format.md alone (no library but the JDK):
 * a minimal RESP client over a plain Socket; the documentation's own Java snippets (the event id
 * of section 2.1, the signed bytes and Ed25519 signatures of section 10.5, the digest of 11.4),
 * which the test compiles beside it as the class WireFormat; publishing into the producer's intake (sections 3.1 and 4),
 * reading an inbox as a consumer group (section 5) and verifying its entries (sections 10.4 and
 * 11.3), and the refusals a producer finds in its intake's dead letters (section 3.1).
 *
 * Usage: java -cp <classes> RoutedClient <config.properties>. It prints one JSON object of what it saw;
 * the test (tests/bus/test_java_routed.py) asserts on it. Exit status 0 unless a step broke.
 */

import java.io.BufferedInputStream;
import java.io.ByteArrayOutputStream;
import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.math.BigDecimal;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.security.NoSuchAlgorithmException;
import java.time.Instant;
import java.time.OffsetDateTime;
import java.time.format.DateTimeParseException;
import java.time.temporal.ChronoUnit;
import java.util.ArrayList;
import java.util.Base64;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.regex.Pattern;

public class RoutedClient {

    // ---------------------------------------------------------------- RESP over a Socket

    /** An error reply (`-NOPERM ...`): a value, so that refusals can be reported. */
    record RedisError(String message) {}

    static final class Resp implements AutoCloseable {
        private final Socket socket;
        private final InputStream in;
        private final OutputStream out;

        Resp(int port, String user, String password) throws IOException {
            socket = new Socket("127.0.0.1", port);
            socket.setSoTimeout(30_000);
            in = new BufferedInputStream(socket.getInputStream());
            out = socket.getOutputStream();
            Object auth = call("AUTH", user, password);
            if (!"OK".equals(auth)) throw new IOException("AUTH " + user + ": " + auth);
        }

        Object call(String... args) throws IOException {
            return call(List.of(args));
        }

        Object call(List<String> args) throws IOException {
            ByteArrayOutputStream request = new ByteArrayOutputStream();
            request.writeBytes(("*" + args.size() + "\r\n").getBytes(StandardCharsets.US_ASCII));
            for (String arg : args) {
                byte[] utf8 = arg.getBytes(StandardCharsets.UTF_8);
                request.writeBytes(("$" + utf8.length + "\r\n").getBytes(StandardCharsets.US_ASCII));
                request.writeBytes(utf8);
                request.writeBytes("\r\n".getBytes(StandardCharsets.US_ASCII));
            }
            out.write(request.toByteArray());
            out.flush();
            return read();
        }

        private Object read() throws IOException {
            int kind = in.read();
            String line = line();
            switch (kind) {
                case '+': return line;
                case '-': return new RedisError(line);
                case ':': return Long.parseLong(line);
                case '$': {
                    int length = Integer.parseInt(line);
                    if (length < 0) return null;
                    byte[] bulk = in.readNBytes(length + 2);
                    return new String(bulk, 0, length, StandardCharsets.UTF_8);
                }
                case '*': {
                    int count = Integer.parseInt(line);
                    if (count < 0) return null;
                    List<Object> items = new ArrayList<>(count);
                    for (int i = 0; i < count; i++) items.add(read());
                    return items;
                }
                default: throw new IOException("unexpected RESP type " + kind);
            }
        }

        private String line() throws IOException {
            ByteArrayOutputStream buffer = new ByteArrayOutputStream();
            int b;
            while ((b = in.read()) != '\r') {
                if (b < 0) throw new IOException("connection closed");
                buffer.write(b);
            }
            in.read();  // '\n'
            return buffer.toString(StandardCharsets.UTF_8);
        }

        @Override
        public void close() throws IOException {
            socket.close();
        }
    }

    // eventId, signedBytes, sign, signatureValid and originDigest are the snippets of
    // docs/wire-format.md (sections 2.1, 10.5 and 11.4), compiled as the class WireFormat.

    /** One key of the keyring (section 10.4): whose it is, what it may sign, when. */
    record Key(String publicKey, Set<String> types, Instant notBefore, Instant notAfter) {}

    static final long MAX_AGE_MS = 7L * 24 * 3600 * 1000;  // SIMPUL_SIGNATURE_MAX_AGE_S default
    static final long MAX_SKEW_MS = 300_000;  // SIMPUL_SIGNATURE_MAX_SKEW_S default

    /** The checks of section 10.4 in their order: null when the entry passes, else the reason. */
    static String verify(Map<String, String> fields, String entryId, Map<String, Key> keyring) {
        if (fields.getOrDefault("signature", "").isEmpty()) return "unsigned";
        Key key = keyring.get(fields.get("signer"));
        if (key == null) return "unknown_signer";
        if (key.types() != null && !key.types().contains(fields.get("type"))) return "signer_not_allowed";
        Instant signedAt = rfc3339(fields.get("signedat"));
        if (signedAt == null || !WireFormat.signatureValid(fields, key.publicKey())) return "bad_signature";
        Instant arrival = Instant.ofEpochMilli(Long.parseLong(entryId.split("-")[0]));
        if ((key.notBefore() != null && signedAt.isBefore(key.notBefore()))
                || (key.notAfter() != null && !signedAt.isBefore(key.notAfter()))
                || (key.notAfter() != null && !arrival.isBefore(key.notAfter()))) return "signer_expired";
        long age = arrival.toEpochMilli() - signedAt.toEpochMilli();
        if (age > MAX_AGE_MS || -age > MAX_SKEW_MS) return "stale_event";
        return null;
    }

    /** {@link #verify}'s answer as text: {@code valid}, or the dead-letter reason. */
    static String verdict(Map<String, String> fields, String entryId, Map<String, Key> keyring) {
        String reason = verify(fields, entryId, keyring);
        return reason == null ? "valid" : reason;
    }

    static final Pattern RFC3339 = Pattern.compile(
            "\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}(\\.\\d+)?(Z|[+-]\\d{2}:\\d{2})");

    static Instant rfc3339(String text) {
        if (text == null || !RFC3339.matcher(text).matches()) return null;
        try {
            return OffsetDateTime.parse(text).toInstant();
        } catch (DateTimeParseException e) {
            return null;
        }
    }

    // ---------------------------------------------------------------- section 11.3: originals

    /** Section 11.3's comparison of an inbox entry with the original it names. */
    static boolean matchesOriginal(Map<String, String> inbox, Map<String, String> original)
            throws NoSuchAlgorithmException {
        if (!WireFormat.originDigest(original).equals(inbox.get("origindigest"))) return false;
        if (!original.getOrDefault("signer", "").equals(inbox.get("originsigner"))) return false;
        Set<String> own = Set.of("data", "signature", "signer", "signedat",
                "originentry", "originsigner", "origindigest");
        Set<String> names = new HashSet<>(inbox.keySet());
        names.addAll(original.keySet());
        for (String name : names) {
            if (!own.contains(name) && !String.valueOf(inbox.get(name)).equals(String.valueOf(original.get(name)))) {
                return false;
            }
        }
        Map<String, Object> shown = Json.object(inbox.get("data"));
        Map<String, Object> full = Json.object(original.get("data"));
        for (Map.Entry<String, Object> field : shown.entrySet()) {
            if (!full.containsKey(field.getKey()) || !full.get(field.getKey()).equals(field.getValue())) return false;
        }
        return true;
    }

    // ---------------------------------------------------------------- a tiny JSON reader/writer

    static final class Json {
        private final String text;
        private int at;

        private Json(String text) {
            this.text = text;
        }

        @SuppressWarnings("unchecked")
        static Map<String, Object> object(String text) {
            Json json = new Json(text);
            Object value = json.value();
            json.space();
            if (json.at != text.length() || !(value instanceof Map)) throw new IllegalArgumentException("not a JSON object");
            return (Map<String, Object>) value;
        }

        private void space() {
            while (at < text.length() && " \t\r\n".indexOf(text.charAt(at)) >= 0) at++;
        }

        private Object value() {
            space();
            char c = text.charAt(at);
            if (c == '{') {
                Map<String, Object> map = new LinkedHashMap<>();
                at++;
                space();
                if (text.charAt(at) == '}') { at++; return map; }
                while (true) {
                    space();
                    String name = (String) value();
                    space();
                    expect(':');
                    map.put(name, value());
                    space();
                    if (text.charAt(at) == ',') { at++; continue; }
                    expect('}');
                    return map;
                }
            }
            if (c == '[') {
                List<Object> list = new ArrayList<>();
                at++;
                space();
                if (text.charAt(at) == ']') { at++; return list; }
                while (true) {
                    list.add(value());
                    space();
                    if (text.charAt(at) == ',') { at++; continue; }
                    expect(']');
                    return list;
                }
            }
            if (c == '"') return string();
            int start = at;
            while (at < text.length() && "{}[],: \t\r\n".indexOf(text.charAt(at)) < 0) at++;
            String word = text.substring(start, at);
            if (word.equals("true") || word.equals("false") || word.equals("null")) return word;
            return new BigDecimal(word);
        }

        private String string() {
            StringBuilder out = new StringBuilder();
            at++;
            while (true) {
                char c = text.charAt(at++);
                if (c == '"') return out.toString();
                if (c != '\\') { out.append(c); continue; }
                char e = text.charAt(at++);
                switch (e) {
                    case 'b': out.append('\b'); break;
                    case 'f': out.append('\f'); break;
                    case 'n': out.append('\n'); break;
                    case 'r': out.append('\r'); break;
                    case 't': out.append('\t'); break;
                    case 'u': out.append((char) Integer.parseInt(text.substring(at, at + 4), 16)); at += 4; break;
                    default: out.append(e);
                }
            }
        }

        private void expect(char c) {
            if (text.charAt(at) != c) throw new IllegalArgumentException("expected " + c + " at " + at);
            at++;
        }

        static String quote(String s) {
            StringBuilder out = new StringBuilder("\"");
            for (char c : s.toCharArray()) {
                if (c == '"' || c == '\\') out.append('\\').append(c);
                else if (c < 0x20 || c > 0x7e) out.append(String.format("\\u%04x", (int) c));
                else out.append(c);
            }
            return out.append('"').toString();
        }

        static String write(Object value) {
            if (value == null) return "null";
            if (value instanceof String s) return quote(s);
            if (value instanceof Number || value instanceof Boolean) return value.toString();
            if (value instanceof RedisError e) return "{\"error\":" + quote(e.message()) + "}";
            if (value instanceof Map<?, ?> map) {
                StringBuilder out = new StringBuilder("{");
                for (Map.Entry<?, ?> entry : map.entrySet()) {
                    if (out.length() > 1) out.append(',');
                    out.append(quote(entry.getKey().toString())).append(':').append(write(entry.getValue()));
                }
                return out.append('}').toString();
            }
            if (value instanceof List<?> list) {
                StringBuilder out = new StringBuilder("[");
                for (Object item : list) {
                    if (out.length() > 1) out.append(',');
                    out.append(write(item));
                }
                return out.append(']').toString();
            }
            throw new IllegalArgumentException("cannot write " + value.getClass());
        }
    }

    // ---------------------------------------------------------------- sections 3.1, 4 and 5

    static final String SOURCE = "urn:malangkota:dukcapil:siak";
    static final String DEDUPE_WINDOW_MS = "604800000";

    final Properties config;
    final int port;
    final Map<String, Object> seen = new LinkedHashMap<>();

    RoutedClient(Properties config) {
        this.config = config;
        this.port = Integer.parseInt(config.getProperty("port"));
    }

    Resp connect(String role) throws IOException {
        return new Resp(port, config.getProperty(role + ".user"), config.getProperty(role + ".password"));
    }

    /** An event of section 2, unsigned; `data` is the JSON text exactly as it will be stored. */
    static Map<String, String> event(String id, String type, String dataschema, String data) {
        Map<String, String> fields = new LinkedHashMap<>();
        fields.put("specversion", "1.0");
        fields.put("id", id);
        fields.put("source", SOURCE);
        fields.put("type", type);
        fields.put("time", Instant.now().truncatedTo(ChronoUnit.MILLIS).toString());
        fields.put("datacontenttype", "application/json");
        fields.put("dataschema", dataschema);
        fields.put("correlationid", id);
        fields.put("data", data);
        return fields;
    }

    /** `FCALL simpul_1_publish` into the producer's own intake (sections 3.1 and 4). */
    String intake() {
        return "simpul:intake:{" + config.getProperty("producer.user") + "}";
    }

    Object publish(Resp producer, Map<String, String> fields) throws IOException {
        String intake = intake();
        List<String> args = new ArrayList<>(List.of(
                "FCALL", "simpul_1_publish", "2", intake, intake + ":seen:" + fields.get("id"),
                DEDUPE_WINDOW_MS, ""));
        fields.forEach((name, value) -> { args.add(name); args.add(value); });
        return producer.call(args);
    }

    /** A reply's field list as a map; a repeated name makes the entry undecodable (section 1). */
    static Map<String, String> fieldsOf(List<?> flat) {
        Map<String, String> fields = new LinkedHashMap<>();
        for (int i = 0; i < flat.size(); i += 2) {
            if (fields.put((String) flat.get(i), (String) flat.get(i + 1)) != null) {
                throw new IllegalStateException("undecodable: field " + flat.get(i) + " repeated");
            }
        }
        return fields;
    }

    /** Reads the group's inbox (section 5, steps 1 and 4) until entries with every wanted id came. */
    Map<String, Map.Entry<String, Map<String, String>>> readInbox(Resp service, String inbox, String group,
            Set<String> wanted) throws IOException {
        seen.put(group + ".group", service.call("XGROUP", "CREATE", inbox, group, "0", "MKSTREAM"));
        Map<String, Map.Entry<String, Map<String, String>>> found = new LinkedHashMap<>();
        long deadline = System.currentTimeMillis() + Long.parseLong(config.getProperty("waitMs"));
        while (!found.keySet().containsAll(wanted) && System.currentTimeMillis() < deadline) {
            Object reply = service.call("XREADGROUP", "GROUP", group, group + "-java-1", "COUNT", "100",
                    "BLOCK", "2000", "STREAMS", inbox, ">");
            if (reply instanceof RedisError error) throw new IOException("XREADGROUP " + inbox + ": " + error.message());
            if (reply == null) continue;
            for (Object stream : (List<?>) reply) {
                for (Object item : (List<?>) ((List<?>) stream).get(1)) {
                    List<?> entry = (List<?>) item;
                    Map<String, String> fields = fieldsOf((List<?>) entry.get(1));
                    found.put(fields.get("id"), Map.entry((String) entry.get(0), fields));
                }
            }
        }
        if (!found.keySet().containsAll(wanted)) throw new IOException(group + ": inbox entries missing, got " + found.keySet());
        return found;
    }

    Map<String, Key> keyring() {
        Map<String, Key> keys = new LinkedHashMap<>();
        Instant notBefore = rfc3339(config.getProperty("producer.notBefore"));
        keys.put(config.getProperty("producer.keyId"), new Key(config.getProperty("producer.publicKey"),
                Set.of(config.getProperty("producer.types").split(",")), notBefore, null));
        // The router's keys may sign every type some principal publishes (section 11.3).
        keys.put(config.getProperty("router.keyId"), new Key(config.getProperty("router.publicKey"),
                null, rfc3339(config.getProperty("router.notBefore")), null));
        return keys;
    }

    /** The properties under `prefix`, without it: a worked example's fields. */
    Map<String, String> fieldsUnder(String prefix) {
        Map<String, String> fields = new LinkedHashMap<>();
        for (String name : config.stringPropertyNames()) {
            if (name.startsWith(prefix)) fields.put(name.substring(prefix.length()), config.getProperty(name));
        }
        return fields;
    }

    /** The worked examples of sections 10.5 and 11.4 through the documentation's Java code. */
    Map<String, Object> vectors() throws Exception {
        Map<String, Object> found = new LinkedHashMap<>();
        Map<String, String> original = fieldsUnder("vector.original.");
        Map<String, String> inbox = fieldsUnder("vector.inbox.");
        String producerKey = config.getProperty("vector.publicKey");
        byte[] bytes = WireFormat.signedBytes(original);
        found.put("signedBytes", bytes.length + " bytes, SHA-256 " + WireFormat.originDigest(original));
        found.put("originalValid", WireFormat.signatureValid(original, producerKey));
        Map<String, String> altered = new LinkedHashMap<>(original);
        altered.put("time", "2026-11-28T13:07:26.124Z");
        found.put("alteredValid", WireFormat.signatureValid(altered, producerKey));
        Map<String, String> own = new LinkedHashMap<>(original);
        WireFormat.sign(own, original.get("signer"), Base64.getDecoder().decode(config.getProperty("vector.seed")));
        found.put("signedWithSeedValid", WireFormat.signatureValid(own, producerKey));
        found.put("originDigest", WireFormat.originDigest(original));
        found.put("inboxOriginDigest", inbox.get("origindigest"));
        found.put("inboxValid", WireFormat.signatureValid(inbox, config.getProperty("vector.routerPublicKey")));
        found.put("inboxWithProducerKeyValid", WireFormat.signatureValid(inbox, producerKey));
        return found;
    }

    void run() throws Exception {
        seen.put("vectors", vectors());
        byte[] seed = Base64.getDecoder().decode(config.getProperty("producer.seed").trim());
        String keyId = config.getProperty("producer.keyId");
        String aggregate = "dukcapil.citizen";

        String diedId = WireFormat.eventId(SOURCE, "kematian", "4711", "1");
        String bornId = WireFormat.eventId(SOURCE, "kelahiran", "815", "1");
        String wrongTypeId = WireFormat.eventId(SOURCE, "kartu-keluarga", "99", "1");
        String tamperedId = WireFormat.eventId(SOURCE, "kematian", "4712", "1");
        String movedId = WireFormat.eventId(SOURCE, "pindah", "2024", "1");
        seen.put("diedId", diedId);

        Map<String, String> died = event(diedId, "dukcapil.citizen.died.v1", "simpul:dukcapil.citizen.died:1.0",
                "{\"nik\":\"3573014107900001\",\"date_of_death\":\"2026-11-27\",\"kecamatan\":\"35.73.02\"}");
        WireFormat.sign(died, keyId, seed);
        // Not compact on purpose: a projection rewrites `data` compact (section 11.2).
        Map<String, String> born = event(bornId, "dukcapil.citizen.born.v1", "simpul:dukcapil.citizen.born:1.0",
                "{\"child_ref\": \"abcdefghijklmnopqrstuvwxyz\", \"nik\": \"3573016011260001\", "
                + "\"kk\": \"3573010101260002\", \"born_on\": \"2026-11-20\", "
                + "\"kelurahan\": \"35.73.02.1001\", \"registered_on\": \"2026-11-27\"}");
        WireFormat.sign(born, keyId, seed);
        // An escaped non-ASCII character and spaces: see what a subscription approved for every
        // field the contract declares (bapenda's) receives.
        Map<String, String> moved = event(movedId, "dukcapil.citizen.moved.v1", "simpul:dukcapil.citizen.moved:1.0",
                "{\"nik\": \"3573014107900003\", \"address\": \"Jl. Ijen No. 5 \\u2014 Klojen, \\\"Rumah Biru\\\"\", "
                + "\"kecamatan\": \"35.73.02\", \"moved_on\": \"2026-11-25\"}");
        WireFormat.sign(moved, keyId, seed);
        // A type the producer's principal may not publish: refused as type_not_allowed.
        Map<String, String> wrongType = event(wrongTypeId, "dukcapil.family.card-issued.v1",
                "simpul:dukcapil.family.card-issued:1.0", "{}");
        WireFormat.sign(wrongType, keyId, seed);
        // Altered after signing: refused as bad_signature.
        Map<String, String> tampered = event(tamperedId, "dukcapil.citizen.died.v1",
                "simpul:dukcapil.citizen.died:1.0",
                "{\"nik\":\"3573014107900002\",\"date_of_death\":\"2026-11-27\",\"kecamatan\":\"35.73.02\"}");
        WireFormat.sign(tampered, keyId, seed);
        tampered.put("data", tampered.get("data").replace("35.73.02", "35.73.05"));
        seen.put("signed", died);
        seen.put("signedBorn", born);
        seen.put("signedMoved", moved);

        try (Resp producer = connect("producer")) {
            seen.put("version", producer.call("FCALL", "simpul_1_version", "0"));
            seen.put("departmentXadd", producer.call("XADD", "simpul:{" + aggregate + "}", "*", "id", "x"));
            seen.put("published", publish(producer, died));
            seen.put("again", publish(producer, died));
            seen.put("publishedBorn", publish(producer, born));
            seen.put("publishedMoved", publish(producer, moved));
            seen.put("publishedWrongType", publish(producer, wrongType));
            seen.put("publishedTampered", publish(producer, tampered));
            seen.put("refusals", refusals(producer, Set.of(wrongTypeId, tamperedId)));
            // Section 3.1: the router deletes a refused event's dedupe marker (the one sign of a
            // refusal the producer can read), so the corrected event, signed anew, goes in
            // under the same id.
            seen.put("admittedMarker", producer.call("GET", intake() + ":seen:" + diedId));
            seen.put("refusedMarkerGone", markerGone(producer, tamperedId));
            seen.put("republished", publish(producer, corrected(tampered, keyId, seed)));
        }

        Map<String, Key> keyring = keyring();
        String routerKeyId = config.getProperty("router.keyId");
        try (Resp service = connect("service")) {
            String group = config.getProperty("service.group");
            String inbox = "simpul:inbox:{" + group + "/" + aggregate + "}";
            seen.put("departmentRead", service.call("XREADGROUP", "GROUP", group, "c", "COUNT", "1",
                    "STREAMS", "simpul:{" + aggregate + "}", ">"));
            var got = readInbox(service, inbox, group, Set.of(diedId, bornId, movedId, tamperedId));
            seen.put("dinsosMovedData", got.get(movedId).getValue().get("data"));
            // Section 6: a consumer that gives up dead-letters with the library's function,
            // into its own group's dead letters beside its inbox, with the eight dlq.* fields.
            Map.Entry<String, Map<String, String>> given = got.remove(bornId);
            seen.put("deadLetter", deadLetter(service, inbox, group, given, "given_up", "not for this test"));
            seen.put("deadLetterAgain", deadLetter(service, inbox, group, given, "given_up", "twice"));
            Map.Entry<String, Map<String, String>> entry = got.get(diedId);
            Map<String, String> fields = entry.getValue();
            seen.put("entry", fields);
            seen.put("projected", fields.containsKey("origindigest"));
            seen.put("routerSigned", routerKeyId.equals(fields.get("signer")));
            seen.put("verdict", verdict(fields, entry.getKey(), keyring));
            seen.put("validWithProducerKey", WireFormat.signatureValid(fields, config.getProperty("producer.publicKey")));
            seen.put("matchesOriginal", matchesOriginal(fields, died));
            Map<String, String> altered = new LinkedHashMap<>(fields);
            altered.put("data", fields.get("data").replace("2026-11-27", "2026-11-26"));
            seen.put("alteredVerdict", verdict(altered, entry.getKey(), keyring));
            Map<String, String> otherOrigin = new LinkedHashMap<>(fields);
            otherOrigin.put("originentry", "1-0");
            seen.put("otherOriginVerdict", verdict(otherOrigin, entry.getKey(), keyring));
            seen.put("read", got.size());
            seen.put("ack", ackAll(service, inbox, group, got));
            seen.put("pending", service.call("XPENDING", inbox, group));
        }

        try (Resp dinkes = connect("projected")) {
            String group = config.getProperty("projected.group");
            String inbox = "simpul:inbox:{" + group + "/" + aggregate + "}";
            var got = readInbox(dinkes, inbox, group, Set.of(bornId));
            Map.Entry<String, Map<String, String>> entry = got.get(bornId);
            Map<String, String> fields = entry.getValue();
            seen.put("bornEntry", fields);
            seen.put("bornVerdict", verdict(fields, entry.getKey(), keyring));
            seen.put("bornMatchesOriginal", matchesOriginal(fields, born));
            // Section 11.2: the approved fields, in the original's order, written compact.
            seen.put("bornDataExpected", "{\"child_ref\":\"abcdefghijklmnopqrstuvwxyz\",\"born_on\":\"2026-11-20\","
                    + "\"kelurahan\":\"35.73.02.1001\",\"registered_on\":\"2026-11-27\"}");
            seen.put("bornRead", got.size());
            seen.put("bornAck", ackAll(dinkes, inbox, group, got));
        }

        try (Resp bapenda = connect("listed")) {
            String group = config.getProperty("listed.group");
            String inbox = "simpul:inbox:{" + group + "/" + aggregate + "}";
            var got = readInbox(bapenda, inbox, group, Set.of(movedId));
            Map.Entry<String, Map<String, String>> entry = got.get(movedId);
            Map<String, String> fields = entry.getValue();
            seen.put("movedEntry", fields);
            seen.put("movedVerdict", verdict(fields, entry.getKey(), keyring));
            seen.put("movedMatchesOriginal", matchesOriginal(fields, moved));
            seen.put("movedDataVerbatim", fields.get("data").equals(moved.get("data")));
            seen.put("movedDataCompact", fields.get("data").equals("{\"nik\":\"3573014107900003\","
                    + "\"address\":\"Jl. Ijen No. 5 \u2014 Klojen, \\\"Rumah Biru\\\"\",\"kecamatan\":\"35.73.02\","
                    + "\"moved_on\":\"2026-11-25\"}"));
            seen.put("movedRead", got.size());
            seen.put("movedAck", ackAll(bapenda, inbox, group, got));
        }

        try (Resp audit = connect("audit")) {
            String group = config.getProperty("audit.group");
            String inbox = "simpul:inbox:{" + group + "/" + aggregate + "}";
            var got = readInbox(audit, inbox, group, Set.of(diedId, bornId, movedId, tamperedId));
            Map.Entry<String, Map<String, String>> entry = got.get(diedId);
            Map<String, String> fields = entry.getValue();
            seen.put("auditEntry", fields);
            seen.put("auditProjected", fields.containsKey("origindigest"));
            seen.put("auditVerdict", verdict(fields, entry.getKey(), keyring));
            seen.put("auditValidWithRouterKey", WireFormat.signatureValid(fields, config.getProperty("router.publicKey")));
            Map<String, String> altered = new LinkedHashMap<>(fields);
            altered.put("kecamatan", "35.73.05");  // a field added after signing
            seen.put("auditAlteredVerdict", verdict(altered, entry.getKey(), keyring));
            seen.put("auditRead", got.size());
            seen.put("auditAck", ackAll(audit, inbox, group, got));
        }
    }

    /** The refused event corrected and signed anew (section 10.3: a new `signedat`). */
    static Map<String, String> corrected(Map<String, String> refused, String keyId, byte[] seed)
            throws GeneralSecurityException {
        Map<String, String> fields = new LinkedHashMap<>(refused);
        fields.remove("signature");
        WireFormat.sign(fields, keyId, seed);
        return fields;
    }

    /** Waits until the event's dedupe marker on the intake is gone: the router refused it. */
    boolean markerGone(Resp producer, String id) throws IOException, InterruptedException {
        long deadline = System.currentTimeMillis() + Long.parseLong(config.getProperty("waitMs"));
        while (producer.call("GET", intake() + ":seen:" + id) != null) {
            if (System.currentTimeMillis() > deadline) return false;
            Thread.sleep(100);
        }
        return true;
    }

    /** `FCALL simpul_1_deadletter` (section 6) on an inbox: acks the entry and adds its dead letter. */
    static Object deadLetter(Resp service, String inbox, String group, Map.Entry<String, Map<String, String>> entry,
            String reason, String error) throws IOException {
        List<String> args = new ArrayList<>(List.of("FCALL", "simpul_1_deadletter", "2", inbox,
                inbox + ":dlq:" + group, group, entry.getKey()));
        entry.getValue().forEach((name, value) -> { args.add(name); args.add(value); });
        args.addAll(List.of("dlq.reason", reason, "dlq.error", error, "dlq.attempts", "1",
                "dlq.stream", inbox, "dlq.entry", entry.getKey(), "dlq.group", group,
                "dlq.consumer", group + "-java-1",
                "dlq.time", Instant.now().truncatedTo(ChronoUnit.MILLIS).toString()));
        return service.call(args);
    }

    /** Section 5, step 5: one XACK for every entry read (handled, or a type not handled here). */
    static Object ackAll(Resp service, String inbox, String group,
            Map<String, Map.Entry<String, Map<String, String>>> read) throws IOException {
        List<String> ack = new ArrayList<>(List.of("XACK", inbox, group));
        read.values().forEach(entry -> ack.add(entry.getKey()));
        return service.call(ack);
    }

    /** The producer's own dead letters (section 3.1), read until every refused id is there. */
    Object refusals(Resp producer, Set<String> ids) throws IOException, InterruptedException {
        String dlq = "simpul:intake:{" + config.getProperty("producer.user") + "}:dlq";
        Map<String, Map<String, String>> byId = new LinkedHashMap<>();
        long deadline = System.currentTimeMillis() + Long.parseLong(config.getProperty("waitMs"));
        while (!byId.keySet().containsAll(ids) && System.currentTimeMillis() < deadline) {
            Object reply = producer.call("XRANGE", dlq, "-", "+");
            if (reply instanceof RedisError error) return error;
            for (Object item : (List<?>) reply) {
                Map<String, String> fields = fieldsOf((List<?>) ((List<?>) item).get(1));
                byId.put(fields.get("id"), fields);
            }
            if (!byId.keySet().containsAll(ids)) Thread.sleep(100);
        }
        return byId;
    }

    public static void main(String[] args) throws Exception {
        Properties config = new Properties();
        try (FileInputStream in = new FileInputStream(args[0])) {
            config.load(new InputStreamReader(in, StandardCharsets.UTF_8));
        }
        RoutedClient client = new RoutedClient(config);
        client.run();
        System.out.println(Json.write(client.seen));
    }
}
