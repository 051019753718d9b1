package streambank.peer;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.math.BigDecimal;
import java.math.BigInteger;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;

import org.apache.avro.Schema;
import org.apache.avro.SchemaNormalization;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericDatumWriter;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.BinaryEncoder;
import org.apache.avro.io.DecoderFactory;
import org.apache.avro.io.EncoderFactory;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.Stores;

/**
 * The fair peer: streambank's own deposit topology as a Kafka Streams application, exactly_once_v2.
 *
 * <pre>
 * bank.accounts.commands --decide [account_to_state: state:ID, command:ID]--> bank.accounts.events, bank.command-outcomes
 * bank.accounts.events   --project-accounts [account_to_view, account_version_to_entry]--> bank.customer-accounts (by customer)
 * bank.customer-accounts --project-customers [customer_to_view]
 * bank.command-outcomes  --record-outcomes [command_to_outcome]
 * </pre>
 *
 * The same topics, partitions, keys and values as the workers (Avro single-object encoding with the
 * project's schemas; values read through schema resolution into the current version), the same tables
 * (each a RocksDB store with a changelog, `bench-kstreams-full-TABLE-changelog`), the same command dedup
 * (a command seen before re-emits what it produced), projections applying only the next version.
 * Customers' own events (the email registry) are not part of it: the deposit workloads send none.
 */
public final class PipelinePeer {
    static final String APPLICATION_ID = "bench-kstreams-full";
    static final String COMMANDS = "bank.accounts.commands";
    static final String EVENTS = "bank.accounts.events";
    static final String OUTCOMES = "bank.command-outcomes";
    static final String SUMMARIES = "bank.customer-accounts";
    static final String STATE = "account_to_state";
    static final String ACCOUNT_VIEWS = "account_to_view";
    static final String HISTORY = "account_version_to_entry";
    static final String CUSTOMER_VIEWS = "customer_to_view";
    static final String OUTCOME_VIEWS = "command_to_outcome";
    static final String[] DERIVED_ID_SUFFIXES = {".debit", ".credit", ".refund", ".reserve-email", ".reply"};
    static final BigDecimal MONEY_LIMIT = new BigDecimal("10000000000000000");

    /** Single-object encoding (C3 01, 8-byte little-endian CRC-64-AVRO fingerprint, body), readers and
     * writers made once per schema; every version in schemas/ is read into the current one. */
    static final class Codec {
        final Map<Long, GenericDatumReader<GenericRecord>> readers = new HashMap<>();
        final Map<String, Schema> current = new HashMap<>();
        final Map<Schema, GenericDatumWriter<GenericRecord>> writers = new HashMap<>();
        final Map<Schema, byte[]> headers = new HashMap<>();
        BinaryEncoder encoder;

        Codec(Path dir) throws IOException {
            Map<Long, Schema> written = new HashMap<>();
            try (var files = Files.list(dir)) {
                for (Path file : (Iterable<Path>) files.filter(p -> p.toString().endsWith(".avsc"))::iterator) {
                    Schema schema = new Schema.Parser().parse(file.toFile());
                    written.put(SchemaNormalization.parsingFingerprint64(schema), schema);
                    if (file.getFileName().toString().equals(schema.getFullName() + ".avsc")) current.put(schema.getFullName(), schema);
                }
            }
            for (Map.Entry<Long, Schema> entry : written.entrySet()) {
                Schema writer = entry.getValue();
                Schema reader = current.getOrDefault(writer.getFullName(), writer);
                readers.put(entry.getKey(), reader.equals(writer) ? new GenericDatumReader<>(reader) : new GenericDatumReader<>(writer, reader));
            }
            for (Schema schema : current.values()) {
                writers.put(schema, new GenericDatumWriter<>(schema));
                headers.put(schema, ByteBuffer.allocate(10).order(ByteOrder.LITTLE_ENDIAN).put((byte) 0xC3).put((byte) 0x01)
                    .putLong(SchemaNormalization.parsingFingerprint64(schema)).array());
            }
        }

        GenericRecord decode(byte[] data) throws IOException {
            if (data == null || data.length < 10 || data[0] != (byte) 0xC3 || data[1] != 0x01) throw new IOException("not single-object Avro");
            long fingerprint = ByteBuffer.wrap(data, 2, 8).order(ByteOrder.LITTLE_ENDIAN).getLong();
            GenericDatumReader<GenericRecord> reader = readers.get(fingerprint);
            if (reader == null) throw new IOException("unknown fingerprint " + fingerprint);
            return reader.read(null, DecoderFactory.get().binaryDecoder(data, 10, data.length - 10, null));
        }

        GenericRecord decodeOwn(byte[] data) {
            try {
                return decode(data);
            } catch (IOException e) {
                throw new IllegalStateException("a store holds an unreadable record", e);
            }
        }

        byte[] encode(GenericRecord record) {
            try {
                ByteArrayOutputStream out = new ByteArrayOutputStream(160);
                out.write(headers.get(record.getSchema()));
                encoder = EncoderFactory.get().binaryEncoder(out, encoder);
                writers.get(record.getSchema()).write(record, encoder);
                encoder.flush();
                return out.toByteArray();
            } catch (IOException e) {
                throw new IllegalStateException(e);
            }
        }

        /** A new record of the current version of `name`, its defaulted fields set. */
        GenericRecord record(String name) {
            Schema schema = current.get(name);
            if (schema == null) throw new IllegalArgumentException("no schema " + name);
            GenericData.Record record = new GenericData.Record(schema);
            for (Schema.Field field : schema.getFields()) {
                if (field.hasDefaultValue()) record.put(field.name(), GenericData.get().deepCopy(field.schema(), GenericData.get().getDefaultValue(field)));
            }
            return record;
        }
    }

    static BigDecimal money(Object bytes) {
        ByteBuffer buffer = ((ByteBuffer) bytes).duplicate();
        byte[] raw = new byte[buffer.remaining()];
        buffer.get(raw);
        return new BigDecimal(new BigInteger(raw), 2);
    }

    static ByteBuffer money(BigDecimal value) {
        return ByteBuffer.wrap(value.setScale(2).unscaledValue().toByteArray());
    }

    static String text(GenericRecord record, String field) {
        Object value = record.get(field);
        return value == null ? null : value.toString();
    }

    /** `<command>` → the account's state and the command's dedup entry, the events and the outcome. */
    static final class Decide implements Processor<String, byte[], String, byte[]> {
        final Codec codec;
        ProcessorContext<String, byte[]> context;
        KeyValueStore<String, byte[]> table;

        Decide(Codec codec) { this.codec = codec; }

        @Override
        public void init(ProcessorContext<String, byte[]> context) {
            this.context = context;
            this.table = context.getStateStore(STATE);
        }

        /** Why the command is refused (reason, message, field), or null. */
        static String[] rejection(String reason, String message, String field) { return new String[] {reason, message, field}; }

        @Override
        public void process(Record<String, byte[]> in) {
            GenericRecord command;
            try {
                command = codec.decode(in.value());
            } catch (IOException e) {
                return; // the workers park it on bank.deadletter; the deposit workloads send none
            }
            String type = command.getSchema().getName();
            String accountId = text(command, "account_id");
            String commandId = text(command, "command_id");
            long now = System.currentTimeMillis();
            if (accountId == null || !accountId.equals(in.key())) {
                emitOutcome(outcome(commandId, type, accountId, rejection("INVALID_FIELD", "the record key must be the aggregate id", "key"), null, now));
                return;
            }
            for (String suffix : DERIVED_ID_SUFFIXES) {
                if (commandId != null && commandId.endsWith(suffix)) {
                    emitOutcome(outcome(commandId, type, accountId, rejection("INVALID_FIELD", "command_id must not end with '" + suffix + "'", "command_id"), null, now));
                    return;
                }
            }
            byte[] seen = table.get("command:" + commandId);
            if (seen != null) { // a redelivery: the records it produced, again, nothing decided
                table.put("command:" + commandId, seen);
                GenericRecord processed = codec.decodeOwn(seen);
                for (Object event : (List<?>) processed.get("events")) {
                    context.forward(new Record<>(accountId, bytes(event), now), "events-out");
                }
                if (processed.get("outcome") != null) emitEncodedOutcome(commandId, bytes(processed.get("outcome")), now);
                return;
            }
            byte[] stateBytes = table.get("state:" + accountId);
            GenericRecord state = stateBytes == null ? null : codec.decodeOwn(stateBytes);
            String[] rejected = null;
            GenericRecord event = null;
            long version = state == null ? 1 : (Long) state.get("version") + 1;
            Object expected = command.get("expected_version");
            if (commandId == null || commandId.isEmpty()) {
                rejected = rejection("INVALID_FIELD", "command_id is required", "command_id");
            } else if (type.equals("OpenAccount")) {
                BigDecimal initial = money(command.get("initial_balance"));
                if (text(command, "customer_id").isEmpty()) rejected = rejection("INVALID_FIELD", "customer_id is required", "customer_id");
                else if (text(command, "title").isEmpty()) rejected = rejection("INVALID_FIELD", "title is required", "title");
                else if (initial.signum() < 0 || initial.abs().compareTo(MONEY_LIMIT) >= 0) rejected = rejection("INVALID_AMOUNT", "initial_balance must not be negative", "initial_balance");
                else if (state != null) rejected = rejection("ALREADY_EXISTS", "account " + accountId + " already exists", null);
                else if (expected != null && (Long) expected != 0L) rejected = rejection("VERSION_CONFLICT", "expected version " + expected + ", aggregate is at 0", "expected_version");
                else {
                    event = envelope("streambank.account.AccountOpened", commandId, accountId, 1, now);
                    for (String f : new String[] {"customer_id", "title", "description"}) event.put(f, text(command, f));
                    event.put("initial_balance", money(initial));
                    state = codec.record("streambank.state.Account");
                    state.put("account_id", accountId);
                    for (String f : new String[] {"customer_id", "title", "description"}) state.put(f, text(command, f));
                    state.put("balance", money(initial));
                    state.put("status", "OPEN");
                    state.put("version", 1L);
                }
            } else if (type.equals("Deposit") || type.equals("Withdraw") || type.equals("CloseAccount")) {
                BigDecimal amount = type.equals("CloseAccount") ? BigDecimal.ZERO : money(command.get("amount"));
                if (!type.equals("CloseAccount") && (amount.signum() <= 0 || amount.compareTo(MONEY_LIMIT) >= 0)) rejected = rejection("INVALID_AMOUNT", "amount must be greater than 0", "amount");
                else if (state == null) rejected = rejection("ACCOUNT_NOT_FOUND", "account " + accountId + " does not exist", null);
                else if ("CLOSED".equals(text(state, "status"))) rejected = rejection("ACCOUNT_CLOSED", "account " + accountId + " is closed", null);
                else if (expected != null && !expected.equals(state.get("version"))) rejected = rejection("VERSION_CONFLICT", "expected version " + expected + ", aggregate is at " + state.get("version"), "expected_version");
                else {
                    BigDecimal balance = money(state.get("balance"));
                    if (type.equals("Deposit")) {
                        BigDecimal after = balance.add(amount);
                        if (after.compareTo(MONEY_LIMIT) >= 0) rejected = rejection("INVALID_AMOUNT", "the balance would exceed decimal(18,2)", "amount");
                        else {
                            event = envelope("streambank.account.MoneyDeposited", commandId, accountId, version, now);
                            event.put("amount", money(amount));
                            event.put("balance", money(after));
                            event.put("reference", text(command, "reference") == null ? "" : text(command, "reference"));
                            state.put("balance", money(after));
                        }
                    } else if (type.equals("Withdraw")) {
                        if (amount.compareTo(balance) > 0) rejected = rejection("INSUFFICIENT_FUNDS", "balance " + balance + " is less than " + amount, "amount");
                        else {
                            event = envelope("streambank.account.MoneyWithdrawn", commandId, accountId, version, now);
                            event.put("amount", money(amount));
                            event.put("balance", money(balance.subtract(amount)));
                            state.put("balance", money(balance.subtract(amount)));
                        }
                    } else if (balance.signum() != 0) {
                        rejected = rejection("BALANCE_NOT_ZERO", "balance is " + balance + "; only an empty account closes", null);
                    } else {
                        event = envelope("streambank.account.AccountClosed", commandId, accountId, version, now);
                        state.put("status", "CLOSED");
                    }
                    if (event != null) state.put("version", version);
                }
            } else {
                rejected = rejection("INVALID_FIELD", type + " is not handled by this peer (transfers are not)", null);
            }
            GenericRecord outcome = outcome(commandId, type, accountId, rejected, rejected == null ? version : null, now);
            byte[] encodedOutcome = codec.encode(outcome);
            byte[] encodedEvent = event == null ? null : codec.encode(event);
            GenericRecord processed = codec.record("streambank.outcome.ProcessedCommand");
            processed.put("aggregate_id", accountId);
            processed.put("outcome", ByteBuffer.wrap(encodedOutcome));
            List<ByteBuffer> events = new ArrayList<>(1);
            if (encodedEvent != null) events.add(ByteBuffer.wrap(encodedEvent));
            processed.put("events", events);
            processed.put("commands", new ArrayList<ByteBuffer>());
            table.put("command:" + commandId, codec.encode(processed)); // dedup entry first, as the workers do
            if (encodedEvent != null) {
                table.put("state:" + accountId, codec.encode(state));
                context.forward(new Record<>(accountId, encodedEvent, now), "events-out");
            }
            emitEncodedOutcome(commandId, encodedOutcome, now);
        }

        static byte[] bytes(Object buffer) {
            ByteBuffer b = ((ByteBuffer) buffer).duplicate();
            byte[] raw = new byte[b.remaining()];
            b.get(raw);
            return raw;
        }

        GenericRecord outcome(String commandId, String type, String accountId, String[] rejected, Long version, long now) {
            GenericRecord outcome = codec.record("streambank.outcome.CommandOutcome");
            outcome.put("command_id", commandId == null ? "" : commandId);
            outcome.put("command_type", type);
            outcome.put("aggregate_id", accountId == null ? "" : accountId);
            outcome.put("status", rejected == null ? "ACCEPTED" : "REJECTED");
            if (rejected != null) {
                outcome.put("reason", rejected[0]);
                outcome.put("message", rejected[1]);
                outcome.put("field", rejected[2]);
            }
            outcome.put("version", version);
            outcome.put("occurred_at", now);
            return outcome;
        }

        void emitOutcome(GenericRecord outcome) {
            emitEncodedOutcome(text(outcome, "command_id"), codec.encode(outcome), (Long) outcome.get("occurred_at"));
        }

        void emitEncodedOutcome(String commandId, byte[] outcome, long now) {
            context.forward(new Record<>(commandId, outcome, now), "outcomes-out");
        }

        GenericRecord envelope(String name, String commandId, String accountId, long version, long now) {
            GenericRecord event = codec.record(name);
            event.put("event_id", commandId + ".0");
            event.put("aggregate_id", accountId);
            event.put("version", version);
            event.put("command_id", commandId);
            event.put("occurred_at", now);
            return event;
        }
    }

    /** Account events → the account view, the statement entry, the account's summary re-keyed by customer. */
    static final class ProjectAccounts implements Processor<String, byte[], String, byte[]> {
        final Codec codec;
        ProcessorContext<String, byte[]> context;
        KeyValueStore<String, byte[]> views;
        KeyValueStore<String, byte[]> history;

        ProjectAccounts(Codec codec) { this.codec = codec; }

        @Override
        public void init(ProcessorContext<String, byte[]> context) {
            this.context = context;
            this.views = context.getStateStore(ACCOUNT_VIEWS);
            this.history = context.getStateStore(HISTORY);
        }

        @Override
        public void process(Record<String, byte[]> in) {
            GenericRecord event;
            try {
                event = codec.decode(in.value());
            } catch (IOException e) {
                return;
            }
            String type = event.getSchema().getName();
            String accountId = text(event, "aggregate_id");
            long version = (Long) event.get("version");
            byte[] currentBytes = views.get(accountId);
            GenericRecord view = currentBytes == null ? null : codec.decodeOwn(currentBytes);
            long currentVersion = view == null ? 0 : (Long) view.get("version");
            String historyKey = String.format("%s#%012d", accountId, version);
            if (version != currentVersion + 1) { // already applied: write again what it wrote (as the workers' restate)
                byte[] entry = history.get(historyKey);
                if (entry != null) history.put(historyKey, entry);
                if (view != null && version == currentVersion) {
                    views.put(accountId, currentBytes);
                    context.forward(new Record<>(text(view, "customer_id"), codec.encode(summary(view)), in.timestamp()), "summaries-out");
                }
                return;
            }
            BigDecimal amount;
            if (type.equals("AccountOpened")) {
                view = codec.record("streambank.view.AccountView");
                view.put("account_id", accountId);
                for (String f : new String[] {"customer_id", "title", "description"}) view.put(f, text(event, f));
                view.put("balance", event.get("initial_balance"));
                view.put("status", "OPEN");
                amount = money(event.get("initial_balance"));
            } else if (type.equals("AccountClosed")) {
                view.put("status", "CLOSED");
                amount = BigDecimal.ZERO.setScale(2);
            } else {
                view.put("balance", event.get("balance"));
                amount = money(event.get("amount"));
                if (type.equals("MoneyWithdrawn") || type.equals("AccountDebited")) amount = amount.negate();
            }
            view.put("version", version);
            GenericRecord entry = codec.record("streambank.view.HistoryEntry");
            entry.put("account_id", accountId);
            entry.put("version", version);
            entry.put("entry_type", type);
            entry.put("amount", money(amount));
            entry.put("balance", view.get("balance"));
            entry.put("occurred_at", event.get("occurred_at"));
            entry.put("command_id", text(event, "command_id"));
            entry.put("transfer_id", event.getSchema().getField("transfer_id") == null ? null : text(event, "transfer_id"));
            views.put(accountId, codec.encode(view));
            history.put(historyKey, codec.encode(entry));
            context.forward(new Record<>(text(view, "customer_id"), codec.encode(summary(view)), in.timestamp()), "summaries-out");
        }

        GenericRecord summary(GenericRecord view) {
            GenericRecord summary = codec.record("streambank.view.AccountSummary");
            for (String f : new String[] {"account_id", "customer_id", "title", "balance", "status", "version"}) summary.put(f, view.get(f));
            return summary;
        }
    }

    /** Account summaries (keyed by customer) → the customer view; news older than what it shows is ignored. */
    static final class ProjectCustomers implements Processor<String, byte[], Void, Void> {
        final Codec codec;
        KeyValueStore<String, byte[]> views;

        ProjectCustomers(Codec codec) { this.codec = codec; }

        @Override
        public void init(ProcessorContext<Void, Void> context) {
            this.views = context.getStateStore(CUSTOMER_VIEWS);
        }

        @Override
        @SuppressWarnings("unchecked")
        public void process(Record<String, byte[]> in) {
            GenericRecord summary;
            try {
                summary = codec.decode(in.value());
            } catch (IOException e) {
                return;
            }
            String customerId = text(summary, "customer_id");
            byte[] currentBytes = views.get(customerId);
            GenericRecord view;
            if (currentBytes == null) { // a placeholder holds the summaries that come before the customer
                view = codec.record("streambank.view.CustomerView");
                view.put("customer_id", customerId);
                for (String f : new String[] {"first_name", "last_name", "email"}) view.put(f, "");
                view.put("version", 0L);
            } else {
                view = codec.decodeOwn(currentBytes);
            }
            List<GenericRecord> accounts = new ArrayList<>((List<GenericRecord>) view.get("accounts"));
            String accountId = text(summary, "account_id");
            boolean changed = true;
            int index = -1;
            for (int i = 0; i < accounts.size(); i++) {
                if (text(accounts.get(i), "account_id").equals(accountId)) { index = i; break; }
            }
            if (index < 0) accounts.add(summary);
            else if ((Long) accounts.get(index).get("version") >= (Long) summary.get("version")) changed = false;
            else accounts.set(index, summary);
            if (changed) {
                view.put("accounts", accounts);
                views.put(customerId, codec.encode(view));
            } else {
                views.put(customerId, currentBytes);
            }
        }
    }

    /** Outcomes → command id → its first outcome. */
    static final class RecordOutcomes implements Processor<String, byte[], Void, Void> {
        KeyValueStore<String, byte[]> outcomes;

        @Override
        public void init(ProcessorContext<Void, Void> context) {
            this.outcomes = context.getStateStore(OUTCOME_VIEWS);
        }

        @Override
        public void process(Record<String, byte[]> in) {
            if (in.key() == null || in.value() == null) return;
            byte[] first = outcomes.get(in.key());
            outcomes.put(in.key(), first == null ? in.value() : first);
        }
    }

    static void store(Topology topology, String name, String processor) {
        topology.addStateStore(Stores.keyValueStoreBuilder(Stores.persistentKeyValueStore(name), Serdes.String(), Serdes.ByteArray())
            .withCachingEnabled(), processor); // as the DSL does by default: writes coalesced per commit
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 3) {
            System.err.println("usage: PipelinePeer BOOTSTRAP SCHEMA_DIR STATE_DIR  (env BANK_PEER_THREADS, BANK_PEER_COMMIT_MS)");
            System.exit(2);
        }
        Codec codec = new Codec(Path.of(args[1]));
        var keys = Serdes.String();
        var values = Serdes.ByteArray();
        Topology topology = new Topology();
        topology.addSource("commands", keys.deserializer(), values.deserializer(), COMMANDS);
        topology.addProcessor("decide", () -> new Decide(codec), "commands");
        store(topology, STATE, "decide");
        topology.addSink("events-out", EVENTS, keys.serializer(), values.serializer(), "decide");
        topology.addSink("outcomes-out", OUTCOMES, keys.serializer(), values.serializer(), "decide");

        topology.addSource("events", keys.deserializer(), values.deserializer(), EVENTS);
        topology.addProcessor("project-accounts", () -> new ProjectAccounts(codec), "events");
        store(topology, ACCOUNT_VIEWS, "project-accounts");
        store(topology, HISTORY, "project-accounts");
        topology.addSink("summaries-out", SUMMARIES, keys.serializer(), values.serializer(), "project-accounts");

        topology.addSource("summaries", keys.deserializer(), values.deserializer(), SUMMARIES);
        topology.addProcessor("project-customers", () -> new ProjectCustomers(codec), "summaries");
        store(topology, CUSTOMER_VIEWS, "project-customers");

        topology.addSource("outcomes", keys.deserializer(), values.deserializer(), OUTCOMES);
        topology.addProcessor("record-outcomes", RecordOutcomes::new, "outcomes");
        store(topology, OUTCOME_VIEWS, "record-outcomes");

        Properties props = new Properties();
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, APPLICATION_ID);
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        props.put(StreamsConfig.STATE_DIR_CONFIG, args[2]);
        props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
        props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, Integer.parseInt(System.getenv().getOrDefault("BANK_PEER_THREADS", "1")));
        String commitMs = System.getenv("BANK_PEER_COMMIT_MS"); // default: Kafka Streams' own for exactly-once, 100 ms
        if (commitMs != null && !commitMs.isEmpty()) props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, Integer.parseInt(commitMs));
        props.put(StreamsConfig.producerPrefix(ProducerConfig.ACKS_CONFIG), "all");
        props.put(StreamsConfig.producerPrefix(ProducerConfig.LINGER_MS_CONFIG), 5);
        props.put(StreamsConfig.producerPrefix(ProducerConfig.COMPRESSION_TYPE_CONFIG), "lz4");
        props.put(StreamsConfig.consumerPrefix("auto.offset.reset"), "earliest");
        // Leave the group on close (Kafka Streams does not, for dynamic members): the bench deletes the
        // group before the next workload, which waits out the 45 s session of a member that stays.
        props.put(StreamsConfig.consumerPrefix("internal.leave.group.on.close"), true);
        System.out.println("TOPOLOGY " + topology.describe());

        KafkaStreams streams = new KafkaStreams(topology, props);
        CountDownLatch stopped = new CountDownLatch(1);
        streams.setStateListener((now, before) -> {
            System.out.println("STATE " + now);
            System.out.flush();
        });
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            streams.close();
            stopped.countDown();
        }));
        streams.setUncaughtExceptionHandler(exception -> {
            exception.printStackTrace(System.out);
            System.out.flush();
            return org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
        streams.start();
        stopped.await();
    }
}
