package smartcity;

import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonToken;
import com.fasterxml.jackson.core.StreamReadConstraints;
import com.fasterxml.jackson.core.exc.StreamConstraintsException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.nio.charset.StandardCharsets;
import java.time.OffsetDateTime;
import java.time.format.DateTimeParseException;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.regex.Pattern;
import org.apache.spark.sql.api.java.UDF4;

/**
 * Why a Kafka message cannot go to its lake table, or null when it keeps its topic's contract.
 *
 * <p>One streaming pass of Jackson over the raw bytes checks everything the contract says (the
 * contract arrives as JSON generated from lib/smartcity/contracts.py, so Python stays the one
 * source of truth): UTF-8, one JSON object and nothing after it, no field twice, no field the
 * message's contract version does not have, JSON types, required fields, ranges, allowed values,
 * patterns, timestamps as ISO 8601 inside a plausible window, no control characters in text, the
 * Kafka key equal to the deviceId. The first rule broken is the reason, in a fixed order, with the
 * same words the lab's tests and quarantine readers expect.
 *
 * <p>Written as a Spark Java UDF because the same checks as Spark SQL expressions cost about ten
 * times the JSON parse itself (a generated method too large for the JIT).
 */
public final class ContractCheck implements UDF4<byte[], byte[], String, String, String> {
  private static final long serialVersionUID = 1L;
  private static volatile Contracts cached;

  @Override
  public String call(byte[] value, byte[] key, String topic, String spec) {
    Contracts contracts = cached;
    if (contracts == null || !contracts.source.equals(spec)) {
      contracts = new Contracts(spec);
      cached = contracts;
    }
    return contracts.check(value, key, topic);
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

    String check(byte[] value, byte[] key, String topicName) {
      if (value == null || value.length == 0) {
        return "empty message";
      }
      if (value.length > maxBytes) {
        return "oversize message: more than " + maxBytes + " bytes";
      }
      if (!validUtf8(value)) {
        return "not UTF-8";
      }
      Topic topic = topics.get(topicName);
      Message m = new Message(topic);
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
      if (topic == null) {
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
    }
  }

  /** What one pass over a message found: values by field, and the first problems in document order. */
  static final class Message {
    final Topic topic;
    final Object[] values; // String, Double, Integer or WRONG; null when absent
    final boolean[] present;
    boolean duplicate;
    String firstUnknown;
    String firstNotString;
    static final Object WRONG = new Object();

    Message(Topic topic) {
      this.topic = topic;
      int n = topic == null ? 0 : topic.fields.size();
      values = new Object[n];
      present = new boolean[n];
    }

    /** Parse the whole message; returns a structural reason or null. */
    String scan(JsonFactory json, byte[] value, int nestingLimit) {
      Set<String> seen = new HashSet<>();
      try (JsonParser p = json.createParser(value)) {
        JsonToken first = p.nextToken();
        if (first != JsonToken.START_OBJECT) {
          return first == null ? "not valid JSON" : "not a JSON object";
        }
        JsonToken t;
        while ((t = p.nextToken()) == JsonToken.FIELD_NAME) {
          String name = p.currentName();
          if (!seen.add(name)) {
            duplicate = true;
          }
          JsonToken v = p.nextToken();
          Field f = topic == null ? null : topic.byName.get(name);
          if (f == null) {
            if (firstUnknown == null) {
              firstUnknown = name;
            }
            p.skipChildren();
            continue;
          }
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
          long at;
          try {
            if (f.pattern != null && !f.pattern.matcher(s).matches()) {
              throw new DateTimeParseException("not ISO 8601 with an offset", s, 0);
            }
            at = micros(s);
          } catch (DateTimeParseException | ArithmeticException e) {
            return "field '" + f.name + "' has the wrong type or format";
          }
          if (at < c.windowLow || at >= c.windowHigh) {
            return "field '" + f.name + "' outside " + c.windowText;
          }
          return null;
        }
        if (f.allowed != null && !f.allowed.contains(s)) {
          return "field '" + f.name + "' not one of " + f.allowedText;
        }
        if (f.pattern != null && !f.pattern.matcher(s).matches()) {
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

  static long micros(String iso) {
    java.time.Instant at = OffsetDateTime.parse(iso).toInstant();
    return Math.addExact(Math.multiplyExact(at.getEpochSecond(), 1_000_000L), at.getNano() / 1000);
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
