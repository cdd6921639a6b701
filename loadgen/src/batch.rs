//! Pre-serialised sample batches and the values they carry.
//!
//! A batch is encoded once per agent as a protobuf template; every send only
//! copies the template and patches the fixed-width value (fixed64) and
//! timestamp (a varint that is always six bytes long for millisecond times
//! between 1971 and 2109) of each sample, then prefixes the sequence number.
//! That keeps the generator's cost per sample at a few nanoseconds, so the
//! collector and not the generator is what a benchmark measures.

use prost::Message;
use steward_proto::v1 as pb;

/// Number of distinct metric names; series `j` is `loadgen.m{j % METRICS}`.
pub const METRICS: usize = 16;
/// Series whose metric is `loadgen.m0` may breach: their normal values stay
/// in 0..=50 and a breach sends 95..=99.9, so a rule `loadgen.m0 > 90` opens
/// an incident on the first breach of each such series.
pub const BREACH_METRIC: &str = "loadgen.m0";
pub const BREACH_THRESHOLD: f64 = 90.0;

/// Smallest and largest millisecond timestamps whose varint is six bytes.
pub const TS_MIN: i64 = 1 << 35;
pub const TS_MAX: i64 = (1 << 42) - 1;
const TS_LEN: usize = 6;
/// `0x19` (field 3, fixed64) + 8 value bytes + `0x20` (field 4, varint) + 6 bytes.
const SAMPLE_TAIL: usize = 1 + 8 + 1 + TS_LEN;

/// The name of series `index`.
pub fn metric_name(index: usize) -> String {
    format!("loadgen.m{}", index % METRICS)
}

/// The samples of one agent's batch, encoded once, with the byte offsets to
/// patch. Invariant: `value_at[i]` and `ts_at[i]` point into `samples` at the
/// 8 value bytes and the 6 timestamp bytes of sample `i`.
#[derive(Debug, Clone)]
pub struct BatchTemplate {
    samples: Vec<u8>,
    value_at: Vec<usize>,
    ts_at: Vec<usize>,
}

impl BatchTemplate {
    /// `series` samples of agent `agent_id`: metric `loadgen.m{j % 16}`,
    /// labels `series=j` and `host=agent_id`.
    pub fn new(agent_id: &str, series: usize) -> Self {
        let mut samples = Vec::with_capacity(series * 64);
        let mut value_at = Vec::with_capacity(series);
        let mut ts_at = Vec::with_capacity(series);
        for index in 0..series {
            let sample = pb::Sample {
                metric: metric_name(index),
                labels: vec![
                    pb::Label {
                        key: "host".into(),
                        value: agent_id.into(),
                    },
                    pb::Label {
                        key: "series".into(),
                        value: index.to_string(),
                    },
                ],
                // Non-default placeholders, so prost writes both fields.
                value: 1.5,
                timestamp_ms: TS_MIN,
            };
            // Field 2 of SampleBatch, length-delimited.
            samples.push(0x12);
            prost::encoding::encode_varint(sample.encoded_len() as u64, &mut samples);
            sample
                .encode(&mut samples)
                .expect("a Vec grows as needed, so encoding cannot run out of space");
            let end = samples.len();
            debug_assert_eq!(samples[end - SAMPLE_TAIL], 0x19);
            debug_assert_eq!(samples[end - TS_LEN - 1], 0x20);
            value_at.push(end - SAMPLE_TAIL + 1);
            ts_at.push(end - TS_LEN);
        }
        Self {
            samples,
            value_at,
            ts_at,
        }
    }

    pub fn series(&self) -> usize {
        self.value_at.len()
    }

    /// An encoded `AgentMessage { batch: SampleBatch { seq, samples } }` with
    /// every sample stamped `timestamp_ms` and carrying `values[i]`.
    pub fn encode(&self, seq: u64, timestamp_ms: i64, values: &[f64]) -> Vec<u8> {
        debug_assert_eq!(values.len(), self.series());
        let ts = varint6(timestamp_ms);
        let seq_len = 1 + prost::encoding::encoded_len_varint(seq);
        let batch_len = seq_len + self.samples.len();
        let mut out = Vec::with_capacity(batch_len + 11);
        out.push(0x12); // AgentMessage.batch, field 2, length-delimited
        prost::encoding::encode_varint(batch_len as u64, &mut out);
        out.push(0x08); // SampleBatch.seq, field 1, varint
        prost::encoding::encode_varint(seq, &mut out);
        let base = out.len();
        out.extend_from_slice(&self.samples);
        for ((value, &value_at), &ts_at) in values.iter().zip(&self.value_at).zip(&self.ts_at) {
            out[base + value_at..base + value_at + 8].copy_from_slice(&value.to_le_bytes());
            out[base + ts_at..base + ts_at + TS_LEN].copy_from_slice(&ts);
        }
        out
    }
}

/// A millisecond timestamp as a six-byte varint, clamped into the range
/// where six bytes is its natural length.
fn varint6(timestamp_ms: i64) -> [u8; TS_LEN] {
    let mut rest = timestamp_ms.clamp(TS_MIN, TS_MAX) as u64;
    let mut out = [0u8; TS_LEN];
    for (index, byte) in out.iter_mut().enumerate() {
        *byte = (rest & 0x7f) as u8;
        rest >>= 7;
        if index + 1 < TS_LEN {
            *byte |= 0x80;
        }
    }
    out
}

/// The facts of a simulated host: one machine per agent id.
fn facts(agent_id: &str) -> std::collections::HashMap<String, String> {
    [
        ("hostname", agent_id.to_string()),
        ("os_name", "Debian GNU/Linux".into()),
        ("os_version", "13".into()),
        ("kernel", "6.12.0-loadgen".into()),
        ("arch", "x86_64".into()),
        ("cpu_cores", "2".into()),
        ("memory_total_bytes", "4294967296".into()),
        ("machine_id", format!("{agent_id}-machine")),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_string(), value))
    .collect()
}

/// Encoded `AgentMessage { inventory }`: a full inventory with sequence
/// number `seq` (shared with batches), which the collector files as an
/// asset, as it does a real agent's first inventory.
pub fn inventory(agent_id: &str, seq: u64, timestamp_ms: i64) -> Vec<u8> {
    pb::AgentMessage {
        kind: Some(pb::agent_message::Kind::Inventory(pb::InventoryUpdate {
            seq,
            full: true,
            facts_changed: facts(agent_id),
            packages_replaced: true,
            packages_fingerprint: steward_core::inventory::packages_fingerprint(
                &Default::default(),
            ),
            timestamp_ms,
            ..Default::default()
        })),
    }
    .encode_to_vec()
}

/// Encoded `AgentMessage { hello }`.
pub fn hello(agent_id: &str, token: &str, epoch: u64, inventory: bool) -> Vec<u8> {
    let inventory = inventory.then(|| pb::Inventory {
        facts: facts(agent_id),
        disks: vec![],
        interfaces: vec![],
    });
    pb::AgentMessage {
        kind: Some(pb::agent_message::Kind::Hello(pb::Hello {
            agent_id: agent_id.into(),
            agent_version: concat!("loadgen-", env!("CARGO_PKG_VERSION")).into(),
            hostname: agent_id.into(),
            token: token.into(),
            epoch,
            inventory,
        })),
    }
    .encode_to_vec()
}

/// xorshift64*: cheap, deterministic per agent, good enough for test data.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Values shaped like host metrics, so on-disk size is realistic: series
/// `j % 4 == 0` a percentage gauge with one decimal (a random walk; the
/// breachable `loadgen.m0` series are among these), `1` a monotonic integer
/// counter, `2` a mostly constant 0/1 state, `3` a full-precision gauge.
#[derive(Debug, Clone)]
pub struct ValueSource {
    rng: Rng,
    state: Vec<f64>,
    breached: Vec<bool>,
    breach_rate: f64,
    values: Vec<f64>,
}

impl ValueSource {
    pub fn new(seed: u64, series: usize, breach_rate: f64) -> Self {
        let mut rng = Rng::new(seed);
        let state = (0..series)
            .map(|index| match index % 4 {
                0 => (rng.unit() * 40.0 * 10.0).round() / 10.0,
                1 => (rng.next_u64() % 1_000_000) as f64,
                2 => 1.0,
                _ => rng.unit() * 1000.0,
            })
            .collect();
        Self {
            rng,
            state,
            breached: vec![false; series],
            breach_rate,
            values: vec![0.0; series],
        }
    }

    /// The next value of every series; `first_breaches` receives the index
    /// of each series that breaches for the first time in this batch.
    pub fn next(&mut self, first_breaches: &mut Vec<usize>) -> &[f64] {
        for (index, (state, value)) in self.state.iter_mut().zip(&mut self.values).enumerate() {
            *value = match index % 4 {
                0 => {
                    let step = (self.rng.unit() - 0.5) * 4.0;
                    *state = ((*state + step).clamp(0.0, 50.0) * 10.0).round() / 10.0;
                    if index % METRICS == 0
                        && self.breach_rate > 0.0
                        && self.rng.unit() < self.breach_rate
                    {
                        if !self.breached[index] {
                            self.breached[index] = true;
                            first_breaches.push(index);
                        }
                        95.0 + (self.rng.next_u64() % 50) as f64 / 10.0
                    } else {
                        *state
                    }
                }
                1 => {
                    *state += (self.rng.next_u64() % 2000) as f64;
                    *state
                }
                2 => {
                    if self.rng.next_u64().is_multiple_of(1000) {
                        *state = 1.0 - *state;
                    }
                    *state
                }
                _ => {
                    *state = (*state + (self.rng.unit() - 0.5) * 10.0).abs();
                    *state
                }
            };
        }
        &self.values
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn patched_template_decodes_to_the_intended_batch() {
        let template = BatchTemplate::new("agent-7", 20);
        // 0.0 too: the template writes the field even where prost would omit it.
        let values: Vec<f64> = (0..20).map(|index| index as f64 * 0.25).collect();
        for (seq, ts) in [
            (1u64, 1_764_000_000_000i64),
            (300, TS_MIN),
            (1 << 40, TS_MAX),
        ] {
            let bytes = template.encode(seq, ts, &values);
            let message = pb::AgentMessage::decode(bytes.as_slice()).unwrap();
            let Some(pb::agent_message::Kind::Batch(batch)) = message.kind else {
                panic!("not a batch: {message:?}");
            };
            assert_eq!(batch.seq, seq);
            assert_eq!(batch.samples.len(), 20);
            for (index, sample) in batch.samples.iter().enumerate() {
                assert_eq!(sample.metric, metric_name(index));
                assert_eq!(sample.value, values[index]);
                assert_eq!(sample.timestamp_ms, ts);
                assert_eq!(sample.labels[0].value, "agent-7");
                assert_eq!(sample.labels[1].value, index.to_string());
            }
        }
    }

    #[test]
    fn six_byte_varint_matches_prost_in_range_and_clamps_outside() {
        for ts in [TS_MIN, TS_MIN + 1, 1_764_633_600_000, TS_MAX] {
            let mut expected = Vec::new();
            prost::encoding::encode_varint(ts as u64, &mut expected);
            assert_eq!(expected, varint6(ts), "{ts}");
        }
        assert_eq!(varint6(5), varint6(TS_MIN));
        assert_eq!(varint6(i64::MAX), varint6(TS_MAX));
    }

    #[test]
    fn hello_decodes_with_id_token_and_optional_inventory() {
        let bytes = hello("a-1", "secret", 9, true);
        let message = pb::AgentMessage::decode(bytes.as_slice()).unwrap();
        let Some(pb::agent_message::Kind::Hello(hello)) = message.kind else {
            panic!("not a hello");
        };
        assert_eq!(
            (hello.agent_id.as_str(), hello.token.as_str()),
            ("a-1", "secret")
        );
        assert_eq!(hello.epoch, 9);
        assert_eq!(hello.inventory.unwrap().facts["hostname"], "a-1");
    }

    #[test]
    fn an_inventory_is_full_with_the_hosts_facts_and_an_empty_package_list() {
        let bytes = inventory("a-1", 1, 1_000);
        let message = pb::AgentMessage::decode(bytes.as_slice()).unwrap();
        let Some(pb::agent_message::Kind::Inventory(update)) = message.kind else {
            panic!("not an inventory");
        };
        assert_eq!(
            (update.seq, update.full, update.packages_replaced),
            (1, true, true)
        );
        assert_eq!(update.facts_changed["machine_id"], "a-1-machine");
        assert!(update.packages_upserted.is_empty());
        assert_eq!(
            update.packages_fingerprint,
            steward_core::inventory::packages_fingerprint(&Default::default())
        );
    }

    #[test]
    fn breaches_only_on_breach_metric_once_per_series_and_above_threshold() {
        let mut source = ValueSource::new(1, 64, 1.0);
        let mut first = Vec::new();
        let values = source.next(&mut first).to_vec();
        assert_eq!(first, [0, 16, 32, 48]);
        // Only the percentage gauges (j % 4 == 0) have a bounded normal range.
        for (index, value) in values.iter().enumerate().step_by(4) {
            assert_eq!(
                *value > BREACH_THRESHOLD,
                metric_name(index) == BREACH_METRIC,
                "{index}"
            );
        }
        first.clear();
        source.next(&mut first);
        assert!(first.is_empty());
    }

    #[test]
    fn no_breach_rate_keeps_values_in_their_normal_range() {
        let mut source = ValueSource::new(2, 32, 0.0);
        let mut first = Vec::new();
        for _ in 0..1000 {
            let values = source.next(&mut first);
            assert!(
                values
                    .iter()
                    .all(|value| value.is_finite() && *value >= 0.0)
            );
            assert!(values[0] <= 50.0);
        }
        assert!(first.is_empty());
    }
}
