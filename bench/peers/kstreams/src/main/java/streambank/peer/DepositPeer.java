package streambank.peer;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.math.BigDecimal;
import java.math.BigInteger;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
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
 * The deposit pipeline as a Kafka Streams application: bank.accounts.commands (OpenAccount, Deposit)
 * → decide against the account in a RocksDB store (changelogged) → the event (bank.accounts.events),
 * the outcome (bank.command-outcomes) and the account view (bench.kstreams.account-views).
 * Records are Avro single-object encoded with the project's schemas, like every other writer.
 */
public final class DepositPeer {
    static final String COMMANDS = "bank.accounts.commands";
    static final String EVENTS = "bank.accounts.events";
    static final String OUTCOMES = "bank.command-outcomes";
    static final String VIEWS = "bench.kstreams.account-views";
    static final String STORE = "account_to_view";

    /** Single-object encoding: C3 01, the 8-byte little-endian CRC-64-AVRO fingerprint, the body. */
    static final class Codec {
        final Map<Long, Schema> byFingerprint = new HashMap<>();
        final Map<String, Schema> byName = new HashMap<>();

        Codec(Path dir) throws IOException {
            try (var files = Files.list(dir)) {
                for (Path file : (Iterable<Path>) files.filter(p -> p.toString().endsWith(".avsc"))::iterator) {
                    Schema schema = new Schema.Parser().parse(file.toFile());
                    byFingerprint.put(SchemaNormalization.parsingFingerprint64(schema), schema);
                    if (file.getFileName().toString().equals(schema.getFullName() + ".avsc")) {
                        byName.put(schema.getFullName(), schema); // the current version of each type
                    }
                }
            }
        }

        GenericRecord decode(byte[] data) throws IOException {
            if (data.length < 10 || data[0] != (byte) 0xC3 || data[1] != 0x01) throw new IOException("not single-object Avro");
            long fingerprint = ByteBuffer.wrap(data, 2, 8).order(ByteOrder.LITTLE_ENDIAN).getLong();
            Schema schema = byFingerprint.get(fingerprint);
            if (schema == null) throw new IOException("unknown fingerprint " + fingerprint);
            return new GenericDatumReader<GenericRecord>(schema)
                .read(null, DecoderFactory.get().binaryDecoder(data, 10, data.length - 10, null));
        }

        byte[] encode(GenericRecord record) {
            try {
                ByteArrayOutputStream out = new ByteArrayOutputStream(128);
                out.write(0xC3);
                out.write(0x01);
                long fingerprint = SchemaNormalization.parsingFingerprint64(record.getSchema());
                out.write(ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(fingerprint).array());
                BinaryEncoder encoder = EncoderFactory.get().binaryEncoder(out, null);
                new GenericDatumWriter<GenericRecord>(record.getSchema()).write(record, encoder);
                encoder.flush();
                return out.toByteArray();
            } catch (IOException e) {
                throw new IllegalStateException(e);
            }
        }

        GenericRecord record(String name) {
            Schema schema = byName.get(name);
            if (schema == null) throw new IllegalArgumentException("no schema " + name);
            GenericData.Record record = new GenericData.Record(schema);
            for (Schema.Field field : schema.getFields()) {  // fields added later carry defaults
                if (field.hasDefaultValue()) record.put(field.name(), GenericData.get().getDefaultValue(field));
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

    static final class Decider implements Processor<String, byte[], String, byte[]> {
        final Codec codec;
        ProcessorContext<String, byte[]> context;
        KeyValueStore<String, byte[]> views;

        Decider(Codec codec) { this.codec = codec; }

        @Override
        public void init(ProcessorContext<String, byte[]> context) {
            this.context = context;
            this.views = context.getStateStore(STORE);
        }

        @Override
        public void process(Record<String, byte[]> in) {
            GenericRecord command;
            try {
                command = codec.decode(in.value());
            } catch (IOException e) {
                return; // not ours to judge here; the plain loop skips them too
            }
            String type = command.getSchema().getName();
            String accountId = command.get("account_id").toString();
            String commandId = command.get("command_id").toString();
            long now = System.currentTimeMillis();
            byte[] current = views.get(accountId);
            GenericRecord view;
            try {
                view = current == null ? null : codec.decode(current);
            } catch (IOException e) {
                throw new IllegalStateException(e);
            }
            String reason = null;
            GenericRecord event = null;
            if (type.equals("OpenAccount")) {
                if (view != null) {
                    reason = "ALREADY_EXISTS";
                } else {
                    event = envelope("streambank.account.AccountOpened", commandId, accountId, 1, now);
                    for (String f : new String[] {"customer_id", "title", "description"}) event.put(f, command.get(f).toString());
                    event.put("initial_balance", money(money(command.get("initial_balance"))));
                    view = codec.record("streambank.view.AccountView");
                    view.put("account_id", accountId);
                    for (String f : new String[] {"customer_id", "title", "description"}) view.put(f, command.get(f).toString());
                    view.put("balance", event.get("initial_balance"));
                    view.put("status", "OPEN");
                    view.put("version", 1L);
                }
            } else if (type.equals("Deposit")) {
                BigDecimal amount = money(command.get("amount"));
                if (view == null) reason = "ACCOUNT_NOT_FOUND";
                else if (!"OPEN".equals(view.get("status").toString())) reason = "ACCOUNT_CLOSED";
                else if (amount.signum() <= 0) reason = "INVALID_AMOUNT";
                else {
                    long version = (Long) view.get("version") + 1;
                    BigDecimal balance = money(view.get("balance")).add(amount);
                    event = envelope("streambank.account.MoneyDeposited", commandId, accountId, version, now);
                    event.put("amount", money(amount));
                    event.put("balance", money(balance));
                    view.put("balance", money(balance));
                    view.put("version", version);
                }
            } else {
                reason = "UNSUPPORTED"; // the peer does deposits only
            }
            GenericRecord outcome = codec.record("streambank.outcome.CommandOutcome");
            outcome.put("command_id", commandId);
            outcome.put("command_type", type);
            outcome.put("aggregate_id", accountId);
            outcome.put("status", reason == null ? "ACCEPTED" : "REJECTED");
            outcome.put("reason", reason);
            outcome.put("version", reason == null ? view.get("version") : null);
            outcome.put("occurred_at", now);
            if (event != null) {
                byte[] encodedView = codec.encode(view);
                views.put(accountId, encodedView);
                context.forward(new Record<>(accountId, codec.encode(event), now), "events");
                context.forward(new Record<>(accountId, encodedView, now), "views");
            }
            context.forward(new Record<>(commandId, codec.encode(outcome), now), "outcomes");
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

    public static void main(String[] args) throws Exception {
        if (args.length != 3) {
            System.err.println("usage: DepositPeer BOOTSTRAP SCHEMA_DIR STATE_DIR");
            System.exit(2);
        }
        Codec codec = new Codec(Path.of(args[1]));
        Topology topology = new Topology();
        topology.addSource("commands", Serdes.String().deserializer(), Serdes.ByteArray().deserializer(), COMMANDS);
        topology.addProcessor("decide", () -> new Decider(codec), "commands");
        topology.addStateStore(Stores.keyValueStoreBuilder(Stores.persistentKeyValueStore(STORE), Serdes.String(),
            Serdes.ByteArray()), "decide");
        topology.addSink("events", EVENTS, Serdes.String().serializer(), Serdes.ByteArray().serializer(), "decide");
        topology.addSink("views", VIEWS, Serdes.String().serializer(), Serdes.ByteArray().serializer(), "decide");
        topology.addSink("outcomes", OUTCOMES, Serdes.String().serializer(), Serdes.ByteArray().serializer(), "decide");

        Properties props = new Properties();
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, "bench-kstreams");
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        props.put(StreamsConfig.STATE_DIR_CONFIG, args[2]);
        props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.AT_LEAST_ONCE);
        props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, 1);
        props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 500); // as the Faust workers (broker_commit_interval)
        props.put(StreamsConfig.producerPrefix(ProducerConfig.ACKS_CONFIG), "all");
        props.put(StreamsConfig.producerPrefix(ProducerConfig.LINGER_MS_CONFIG), 5);
        props.put(StreamsConfig.producerPrefix(ProducerConfig.COMPRESSION_TYPE_CONFIG), "lz4");
        props.put(StreamsConfig.consumerPrefix("auto.offset.reset"), "earliest");
        // Leave the group on close (Kafka Streams does not, for dynamic members): the bench deletes the
        // group before the next workload, which waits out the 45 s session of a member that stays.
        props.put(StreamsConfig.consumerPrefix("internal.leave.group.on.close"), true);

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
