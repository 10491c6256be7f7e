package smartcity;

import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonToken;
import com.fasterxml.jackson.core.StreamReadConstraints;
import com.fasterxml.jackson.core.exc.StreamConstraintsException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.regex.Pattern;
import java.time.Instant;
import java.util.Base64;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.RowFactory;
import org.apache.spark.sql.api.java.UDF6;
import org.apache.spark.sql.expressions.UserDefinedFunction;
import org.apache.spark.sql.functions;
import org.apache.spark.sql.types.DataTypes;
import org.apache.spark.sql.types.StructType;

/**
 * Where a Kafka message goes in the lake, and the line that carries it there.
 *
 * <p>Returns (table, partition value, line): for a message that keeps its topic's contract, its
 * topic, its event date and the event as one normalized CSV line (every field of the latest
 * contract, then the Kafka lineage: the lake file's columns in order); for any other message,
 * {@code _quarantine}, its topic and a JSON line that keeps it whole (bytes and key in base64, Kafka
 * coordinates) with the reason. The stream writes the lines as text, which the lab turns into
 * Parquet with Arrow: no second JSON parse in Spark, and Arrow reads CSV four times faster than JSON.
 *
 * <p>One streaming pass of Jackson over the raw bytes checks everything the contract says (the
 * contract arrives as JSON generated from lib/smartcity/fleet/contracts.py, so Python stays the one
 * source of truth): UTF-8, one JSON object and nothing after it, no field twice, no field the
 * message's contract version does not have, JSON types, required fields, ranges, allowed values,
 * patterns, timestamps as ISO 8601 inside a plausible window, no control characters in text, the
 * Kafka key equal to the deviceId. The first rule broken is the reason, in a fixed order, with the
 * same words the lab's tests and quarantine readers expect.
 *
 * <p>Written as a Spark Java UDF because the same checks as Spark SQL expressions cost about ten
 * times the JSON parse itself (a generated method too large for the JIT).
 */
public final class ContractCheck implements UDF6<byte[], byte[], String, Integer, Long, Long, Row> {
  private static final long serialVersionUID = 3L;
  public static final String QUARANTINE = "_quarantine";
  private final String spec;
  private transient Contracts contracts;

  /** The contracts arrive once, with the function, as JSON generated from fleet/contracts.py. */
  public ContractCheck(String spec) {
    this.spec = spec;
  }

  /**
   * The function to register: returns (table, pkey, line), and is marked non-deterministic so
   * Spark calls it once per message even where several columns read its result. (Built here so
   * that Java, not py4j, picks the typed {@code udf} overload.)
   */
  public static UserDefinedFunction function(String spec) {
    StructType route = DataTypes.createStructType(new org.apache.spark.sql.types.StructField[] {
        DataTypes.createStructField("table", DataTypes.StringType, false),
        DataTypes.createStructField("pkey", DataTypes.StringType, false),
        DataTypes.createStructField("line", DataTypes.StringType, false)});
    return functions.udf(new ContractCheck(spec), route).asNondeterministic();
  }

  @Override
  public Row call(byte[] value, byte[] key, String topic, Integer partition, Long offset, Long kafkaMicros) {
    Contracts c = contracts;
    if (c == null) {
      c = new Contracts(spec);
      contracts = c;
    }
    return c.route(value, key, topic, partition, offset, kafkaMicros);
  }

  /** The contracts of every topic and version, parsed once per executor JVM. */
  static final class Contracts {
    final String source;
    final int maxBytes;
    final int nestingLimit;
    final long windowLow;
    final long windowHigh;
    final String windowText;
    final String versionsText;
    final JsonFactory json;
    final Set<Integer> versions = new HashSet<>();
    final Map<String, Topic> topics = new HashMap<>();

    Contracts(String spec) {
      source = spec;
      try {
        JsonNode root = new ObjectMapper().readTree(spec);
        maxBytes = root.get("max_bytes").asInt();
        nestingLimit = root.get("nesting_limit").asInt();
        json = JsonFactory.builder()
            .streamReadConstraints(StreamReadConstraints.builder().maxNestingDepth(nestingLimit).build())
            .build();
        windowLow = micros(root.get("window").get(0).asText());
        windowHigh = micros(root.get("window").get(1).asText());
        windowText = root.get("window_text").asText();
        versionsText = root.get("versions_text").asText();
        for (JsonNode v : root.get("versions")) {
          versions.add(v.asInt());
        }
        root.get("topics").fields().forEachRemaining(e -> topics.put(e.getKey(), new Topic(e.getValue())));
      } catch (Exception e) {
        throw new IllegalArgumentException("smartcity ContractCheck: unreadable contract spec: " + e, e);
      }
    }

    Row route(byte[] value, byte[] key, String topicName, Integer partition, Long offset, Long kafkaMicros) {
      Topic topic = topics.get(topicName);
      Message m = new Message(topic);
      String reason = check(m, value, key, topicName);
      if (reason == null) {
        StringBuilder line = new StringBuilder(value.length);
        m.appendCsv(line);
        line.append(',');
        appendNumber(line, partition);
        line.append(',');
        appendNumber(line, offset);
        line.append(',');
        appendNumber(line, kafkaMicros);
        return RowFactory.create(topicName, isoMicros(m.eventMicros).substring(0, 10), line.toString());
      }
      StringBuilder line = new StringBuilder(value == null ? 64 : value.length + 160).append('{');
      line.append("\"reason\":");
      appendString(line, reason);
      line.append(",\"preview\":");
      appendString(line, preview(value));
      line.append(",\"key\":");
      appendString(line, key == null ? null : Base64.getEncoder().encodeToString(key));
      line.append(",\"value\":");
      appendString(line, value == null ? null : Base64.getEncoder().encodeToString(value));
      appendLineage(line.append(','), partition, offset, kafkaMicros);
      line.append(",\"topic\":");
      appendString(line, topicName);
      // left open: the stream appends the Kafka headers (Spark's own to_json of them) and the brace
      return RowFactory.create(QUARANTINE, topicName, line.toString());
    }

    String check(Message m, byte[] value, byte[] key, String topicName) {
      if (value == null || value.length == 0) {
        return "empty message";
      }
      if (value.length > maxBytes) {
        return "oversize message: more than " + maxBytes + " bytes";
      }
      if (!validUtf8(value)) {
        return "not UTF-8";
      }
      String broken = m.scan(json, value, nestingLimit);
      if (broken != null) {
        return broken;
      }
      if (m.duplicate) {
        return "a field appears twice";
      }
      if (key == null) {
        return "no key: events are keyed by their deviceId";
      }
      if (m.topic == null) {
        return "no contract for topic " + topicName;
      }
      return m.verdict(this, key);
    }
  }

  /** One topic's fields, in contract order. */
  static final class Topic {
    final List<Field> fields = new ArrayList<>();
    final Map<String, Field> byName = new HashMap<>();

    Topic(JsonNode node) {
      int index = 0;
      for (JsonNode f : node.get("fields")) {
        Field field = new Field(f, index++);
        fields.add(field);
        byName.put(field.name, field);
      }
    }
  }

  static final class Field {
    final String name;
    final int index;
    final String type;
    final boolean required;
    final int since;
    final Double minimum;
    final Double maximum;
    final String minimumText;
    final String maximumText;
    final Set<String> allowed;
    final String allowedText;
    final Pattern pattern;
    final String patternName;
    final boolean uuid;

    Field(JsonNode f, int index) {
      this.index = index;
      name = f.get("name").asText();
      type = f.get("type").asText();
      required = f.get("required").asBoolean();
      since = f.get("since").asInt();
      minimum = f.hasNonNull("minimum") ? f.get("minimum").asDouble() : null;
      maximum = f.hasNonNull("maximum") ? f.get("maximum").asDouble() : null;
      minimumText = f.hasNonNull("minimum_text") ? f.get("minimum_text").asText() : null;
      maximumText = f.hasNonNull("maximum_text") ? f.get("maximum_text").asText() : null;
      Set<String> values = new HashSet<>();
      for (JsonNode v : f.get("enum")) {
        values.add(v.asText());
      }
      allowed = values.isEmpty() ? null : values;
      allowedText = f.get("enum_text").asText();
      pattern = f.hasNonNull("pattern") ? Pattern.compile(f.get("pattern").asText()) : null;
      patternName = f.hasNonNull("pattern_name") ? f.get("pattern_name").asText() : null;
      uuid = "a UUID".equals(patternName);
    }
  }

  /** What one pass over a message found: values by field, and the first problems in document order. */
  static final class Message {
    final Topic topic;
    final Object[] values; // String, Double, Long (ints, timestamps in microseconds) or WRONG; null when absent
    final String[] texts; // numbers as they were written
    final boolean[] present;
    boolean duplicate;
    long eventMicros;
    String firstUnknown;
    String firstNotString;
    static final Object WRONG = new Object();

    Message(Topic topic) {
      this.topic = topic;
      int n = topic == null ? 0 : topic.fields.size();
      values = new Object[n];
      texts = new String[n];
      present = new boolean[n];
    }

    /** Parse the whole message; returns a structural reason or null. */
    String scan(JsonFactory json, byte[] value, int nestingLimit) {
      Set<String> unknown = null;
      try (JsonParser p = json.createParser(value)) {
        JsonToken first = p.nextToken();
        if (first != JsonToken.START_OBJECT) {
          return first == null ? "not valid JSON" : "not a JSON object";
        }
        JsonToken t;
        while ((t = p.nextToken()) == JsonToken.FIELD_NAME) {
          String name = p.currentName();
          JsonToken v = p.nextToken();
          Field f = topic == null ? null : topic.byName.get(name);
          if (f == null) {
            if (unknown == null) {
              unknown = new HashSet<>();
            }
            duplicate |= !unknown.add(name);
            if (firstUnknown == null) {
              firstUnknown = name;
            }
            p.skipChildren();
            continue;
          }
          duplicate |= present[f.index];
          present[f.index] = true;
          values[f.index] = read(p, v, f);
        }
        if (t != JsonToken.END_OBJECT || p.nextToken() != null) {
          return "not valid JSON";
        }
      } catch (StreamConstraintsException e) {
        return e.getMessage() != null && e.getMessage().contains("nesting depth")
            ? "nested too deep (more than " + nestingLimit + " levels)" : "not valid JSON";
      } catch (Exception e) {
        return "not valid JSON";
      }
      return null;
    }

    private Object read(JsonParser p, JsonToken v, Field f) throws Exception {
      if (v == JsonToken.VALUE_NULL) {
        return null;
      }
      switch (f.type) {
        case "string":
        case "timestamp":
          if (v == JsonToken.VALUE_STRING) {
            return p.getText();
          }
          if (firstNotString == null) {
            firstNotString = f.name;
          }
          p.skipChildren();
          return WRONG;
        case "double":
          if (v == JsonToken.VALUE_NUMBER_INT || v == JsonToken.VALUE_NUMBER_FLOAT) {
            texts[f.index] = p.getText();  // written back as sent: no formatting of doubles
            return p.getDoubleValue();
          }
          p.skipChildren();
          return WRONG;
        case "int":
        case "long":
          if (v == JsonToken.VALUE_NUMBER_INT) {
            JsonParser.NumberType kind = p.getNumberType();
            if (kind == JsonParser.NumberType.INT || (f.type.equals("long") && kind == JsonParser.NumberType.LONG)) {
              return p.getLongValue();
            }
          }
          p.skipChildren();
          return WRONG;
        default:
          p.skipChildren();
          return WRONG;
      }
    }

    /** The first contract rule broken, in the order the lab documents, or null. */
    String verdict(Contracts c, byte[] key) {
      Object version = values[indexOf("schemaVersion")];
      int v = version instanceof Long ? (int) (long) (Long) version : -1;
      int effective = c.versions.contains(v) ? v : Integer.MAX_VALUE;
      if (firstUnknown != null) {
        return "unknown field '" + firstUnknown + "'";
      }
      for (Field f : topic.fields) {
        if (present[f.index] && f.since > effective) {
          return "unknown field '" + f.name + "'";
        }
      }
      if (firstNotString != null) {
        return "field '" + firstNotString + "' must be a JSON string";
      }
      for (Field f : topic.fields) {
        String broken = checkField(c, f);
        if (broken != null) {
          return broken;
        }
        if (f.name.equals("schemaVersion") && !c.versions.contains(v)) {
          return "schemaVersion is not a supported contract version (" + c.versionsText + ")";
        }
      }
      for (Field f : topic.fields) {
        if (f.type.equals("string") && values[f.index] instanceof String && hasControl((String) values[f.index])) {
          return "a text field holds a control character";
        }
      }
      Object device = values[indexOf("deviceId")];
      if (!new String(key, StandardCharsets.UTF_8).equals(device)) {
        return "the Kafka key is not the deviceId";
      }
      return null;
    }

    /**
     * Every field of the topic's latest contract, in contract order, as CSV: absent fields empty, text
     * always quoted (so an empty text is not a missing one), numbers as sent, timestamps as epoch
     * microseconds. Checked text holds no control character, so a line never breaks.
     */
    void appendCsv(StringBuilder out) {
      for (Field f : topic.fields) {
        if (f.index > 0) {
          out.append(',');
        }
        Object v = values[f.index];
        if (v instanceof String) {
          appendQuoted(out, (String) v);
        } else if (v instanceof Double) {
          out.append(texts[f.index]);
        } else if (v != null) {
          out.append((long) (Long) v);  // ints, longs, and timestamps (checkField made them microseconds)
        }
      }
    }

    private int indexOf(String name) {
      return topic.byName.get(name).index;
    }

    private String checkField(Contracts c, Field f) {
      Object value = values[f.index];
      if (value == null || value == WRONG) {
        if (value == WRONG || (f.required && present[f.index])) {
          return "field '" + f.name + "' has the wrong type or format";
        }
        return f.required ? "missing required field '" + f.name + "'" : null;
      }
      if (value instanceof String) {
        String s = (String) value;
        if (f.required && s.isEmpty() && f.type.equals("string")) {
          return "field '" + f.name + "' is empty";
        }
        if (f.type.equals("timestamp")) {
          long at = parseIso(s);
          if (at == NOT_A_TIME) {
            return "field '" + f.name + "' has the wrong type or format";
          }
          if (at < c.windowLow || at >= c.windowHigh) {
            return "field '" + f.name + "' outside " + c.windowText;
          }
          values[f.index] = at;  // kept as epoch microseconds, written back normalized
          if (f.name.equals("timestamp")) {
            eventMicros = at;
          }
          return null;
        }
        if (f.allowed != null && !f.allowed.contains(s)) {
          return "field '" + f.name + "' not one of " + f.allowedText;
        }
        if (f.pattern != null && !(f.uuid ? isUuid(s) : f.pattern.matcher(s).matches())) {
          return "field '" + f.name + "' is not " + f.patternName;
        }
        return null;
      }
      double number = value instanceof Double ? (Double) value : (double) (long) (Long) value;
      if (Double.isNaN(number) || Double.isInfinite(number)) {
        return "field '" + f.name + "' is not a finite number";
      }
      if (f.minimum != null && number < f.minimum) {
        return "field '" + f.name + "' below its minimum " + f.minimumText;
      }
      if (f.maximum != null && number > f.maximum) {
        return "field '" + f.name + "' above its maximum " + f.maximumText;
      }
      return null;
    }
  }

  static void appendLineage(StringBuilder out, Integer partition, Long offset, Long kafkaMicros) {
    out.append("\"kafka_partition\":").append(partition).append(",\"kafka_offset\":").append(offset)
        .append(",\"kafka_timestamp\":");
    appendString(out, kafkaMicros == null ? null : isoMicros(kafkaMicros));
  }

  /** A CSV number, empty for null. */
  static void appendNumber(StringBuilder out, Number n) {
    if (n != null) {
      out.append(n.longValue());
    }
  }

  /** A CSV text field: quoted, its quotes doubled. */
  static void appendQuoted(StringBuilder out, String s) {
    out.append('"');
    int from = 0;
    for (int i = s.indexOf('"'); i >= 0; i = s.indexOf('"', i + 1)) {
      out.append(s, from, i + 1).append('"');
      from = i + 1;
    }
    out.append(s, from, s.length()).append('"');
  }

  static final long NOT_A_TIME = Long.MIN_VALUE;

  /**
   * Epoch microseconds of {@code yyyy-MM-ddTHH:mm:ss[.f{1,9}](Z|+hh:mm|-hh:mm)}, or NOT_A_TIME. Written
   * out by hand: the regular expression and java.time took most of the check's time.
   */
  static long parseIso(String s) {
    int n = s.length();
    if (n < 20 || s.charAt(4) != '-' || s.charAt(7) != '-' || s.charAt(10) != 'T' || s.charAt(13) != ':'
        || s.charAt(16) != ':') {
      return NOT_A_TIME;
    }
    int year = digits(s, 0, 4);
    int month = digits(s, 5, 2);
    int day = digits(s, 8, 2);
    int hour = digits(s, 11, 2);
    int minute = digits(s, 14, 2);
    int second = digits(s, 17, 2);
    if (year < 0 || month < 1 || month > 12 || day < 1 || day > daysIn(year, month) || hour < 0 || hour > 23
        || minute < 0 || minute > 59 || second < 0 || second > 59) {
      return NOT_A_TIME;
    }
    int i = 19;
    long fraction = 0;
    if (s.charAt(i) == '.') {
      int start = ++i;
      while (i < n && s.charAt(i) >= '0' && s.charAt(i) <= '9') {
        if (i - start < 6) {
          fraction = fraction * 10 + (s.charAt(i) - '0');
        }
        i++;
      }
      int count = i - start;
      if (count < 1 || count > 9) {
        return NOT_A_TIME;
      }
      for (int k = count; k < 6; k++) {
        fraction *= 10;
      }
    }
    int offsetSeconds;
    if (i == n - 1 && s.charAt(i) == 'Z') {
      offsetSeconds = 0;
    } else if (i == n - 6 && (s.charAt(i) == '+' || s.charAt(i) == '-') && s.charAt(i + 3) == ':') {
      int oh = digits(s, i + 1, 2);
      int om = digits(s, i + 4, 2);
      if (oh < 0 || oh > 18 || om < 0 || om > 59) {
        return NOT_A_TIME;
      }
      offsetSeconds = (s.charAt(i) == '+' ? 1 : -1) * (oh * 3600 + om * 60);
    } else {
      return NOT_A_TIME;
    }
    long seconds = epochDay(year, month, day) * 86_400L + hour * 3600L + minute * 60L + second - offsetSeconds;
    return seconds * 1_000_000L + fraction;
  }

  private static int digits(String s, int from, int count) {
    int v = 0;
    for (int k = from; k < from + count; k++) {
      char c = s.charAt(k);
      if (c < '0' || c > '9') {
        return -1;
      }
      v = v * 10 + (c - '0');
    }
    return v;
  }

  private static int daysIn(int year, int month) {
    boolean leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    return month == 2 ? (leap ? 29 : 28) : (month == 4 || month == 6 || month == 9 || month == 11) ? 30 : 31;
  }

  /** Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil). */
  static long epochDay(int year, int month, int day) {
    long y = month <= 2 ? year - 1 : year;
    long era = Math.floorDiv(y, 400);
    long yoe = y - era * 400;
    long doy = (153L * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1;
    long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146_097 + doe - 719_468;
  }

  /** {@code yyyy-MM-ddTHH:mm:ss.SSSSSSZ} of epoch microseconds (years 0-9999; java.time beyond). */
  static String isoMicros(long micros) {
    long seconds = Math.floorDiv(micros, 1_000_000L);
    long fraction = Math.floorMod(micros, 1_000_000L);
    long days = Math.floorDiv(seconds, 86_400L);
    long secondOfDay = Math.floorMod(seconds, 86_400L);
    long z = days + 719_468;
    long era = Math.floorDiv(z, 146_097);
    long doe = z - era * 146_097;
    long yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    long doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    long mp = (5 * doy + 2) / 153;
    long day = doy - (153 * mp + 2) / 5 + 1;
    long month = mp < 10 ? mp + 3 : mp - 9;
    long year = yoe + era * 400 + (month <= 2 ? 1 : 0);
    if (year < 0 || year > 9999) {
      return Instant.ofEpochSecond(seconds, fraction * 1000L).toString();
    }
    char[] c = "0000-00-00T00:00:00.000000Z".toCharArray();
    put(c, 0, year, 4);
    put(c, 5, month, 2);
    put(c, 8, day, 2);
    put(c, 11, secondOfDay / 3600, 2);
    put(c, 14, secondOfDay / 60 % 60, 2);
    put(c, 17, secondOfDay % 60, 2);
    put(c, 20, fraction, 6);
    return new String(c);
  }

  private static void put(char[] c, int at, long value, int width) {
    for (int k = at + width - 1; k >= at; k--) {
      c[k] = (char) ('0' + value % 10);
      value /= 10;
    }
  }

  /** The canonical 8-4-4-4-12 hex form, checked by hand (the id of every event). */
  static boolean isUuid(String s) {
    if (s.length() != 36) {
      return false;
    }
    for (int i = 0; i < 36; i++) {
      char c = s.charAt(i);
      boolean dash = i == 8 || i == 13 || i == 18 || i == 23;
      if (dash ? c != '-' : !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) {
        return false;
      }
    }
    return true;
  }

  /** A JSON string (or null), escaped so that the line stays one line whatever the text holds. */
  static void appendString(StringBuilder out, String s) {
    if (s == null) {
      out.append("null");
      return;
    }
    out.append('"');
    int plain = 0;
    while (plain < s.length()) {
      char ch = s.charAt(plain);
      if (ch == '"' || ch == '\\' || ch < 0x20 || ch == 0x7f || ch == 0x2028 || ch == 0x2029) {
        break;
      }
      plain++;
    }
    out.append(s, 0, plain);  // the usual case: nothing to escape
    for (int i = plain; i < s.length(); i++) {
      char ch = s.charAt(i);
      if (ch == '"' || ch == '\\') {
        out.append('\\').append(ch);
      } else if (ch < 0x20 || ch == 0x7f || ch == 0x2028 || ch == 0x2029) {
        out.append(String.format("\\u%04x", (int) ch));
      } else {
        out.append(ch);
      }
    }
    out.append('"');
  }

  /** The message as printable text for people: invalid UTF-8 and control characters as U+FFFD, cut at 512. */
  static String preview(byte[] value) {
    if (value == null) {
      return null;
    }
    String text = new String(value, StandardCharsets.UTF_8);
    StringBuilder out = new StringBuilder(Math.min(text.length(), 512));
    for (int i = 0; i < text.length() && out.length() < 512; i++) {
      char ch = text.charAt(i);
      if (Character.isHighSurrogate(ch) && out.length() == 511) {
        break;
      }
      out.append(ch < 0x20 || ch == 0x7f ? '\ufffd' : ch);
    }
    return out.toString();
  }

  static long micros(String iso) {
    long at = parseIso(iso);
    if (at == NOT_A_TIME) {
      throw new IllegalArgumentException("not an ISO 8601 timestamp: " + iso);
    }
    return at;
  }

  static boolean hasControl(String s) {
    for (int i = 0; i < s.length(); i++) {
      char ch = s.charAt(i);
      if (ch < 0x20 || ch == 0x7f) {
        return true;
      }
    }
    return false;
  }

  /** Strict UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF. ASCII takes the fast path. */
  static boolean validUtf8(byte[] b) {
    int i = 0;
    int n = b.length;
    while (i < n) {
      int c = b[i] & 0xff;
      if (c < 0x80) {
        i++;
        continue;
      }
      int need;
      int min;
      if (c >= 0xc2 && c <= 0xdf) {
        need = 1;
        min = 0x80;
      } else if (c >= 0xe0 && c <= 0xef) {
        need = 2;
        min = 0x800;
      } else if (c >= 0xf0 && c <= 0xf4) {
        need = 3;
        min = 0x10000;
      } else {
        return false;
      }
      if (i + need >= n) {
        return false;
      }
      int cp = c & (0x3f >> need);
      for (int k = 1; k <= need; k++) {
        int cc = b[i + k] & 0xff;
        if ((cc & 0xc0) != 0x80) {
          return false;
        }
        cp = (cp << 6) | (cc & 0x3f);
      }
      if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
        return false;
      }
      i += need + 1;
    }
    return true;
  }
}
