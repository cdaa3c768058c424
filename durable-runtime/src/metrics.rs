//! The runtime's counters ([`Metrics`]) and their Prometheus rendering.

use std::fmt::Write as _;

/// A snapshot of the runtime's counters, from [`Runtime::metrics`](crate::Runtime::metrics).
/// Counts are since the runtime opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Metrics {
    /// Calls run (shared and exclusive; alarm runs not included).
    pub calls: u64,
    /// Instances built (`new` + `on_activate`): first calls, after eviction, after a reset.
    pub activations: u64,
    /// Objects evicted after their idle timeout.
    pub evictions: u64,
    /// Calls refused because an object's queue was full.
    pub overloads: u64,
    /// Alarm handler runs (retries included).
    pub alarm_runs: u64,
    /// Alarm handler runs that failed (error or panic).
    pub alarm_failures: u64,
    /// Objects live in memory now (activated, not evicted).
    pub live_objects: u64,
    /// Syncs of storage completed (each covers every write committed before it).
    pub syncs: u64,
    /// WebSockets this runtime holds open now (for its own objects, or across its
    /// connection for a connected runtime).
    pub websockets_held: u64,
    /// WebSocket events (messages and closes) handled by this runtime's objects.
    pub websocket_events: u64,
    /// Cluster mode: the shards this node owns now (0 outside a cluster).
    pub shards_owned: u64,
    /// Cluster mode: calls (and WebSocket events) this node sent on to the node owning their
    /// object.
    pub calls_forwarded: u64,
}

/// A Prometheus metric type.
#[derive(Clone, Copy)]
enum Kind {
    /// Only goes up (until the process restarts).
    Counter,
    /// Goes up and down.
    Gauge,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

impl Metrics {
    /// The `Content-Type` of [`to_prometheus`](Metrics::to_prometheus)'s output: the
    /// Prometheus text exposition format, version 0.0.4.
    pub const PROMETHEUS_CONTENT_TYPE: &'static str = "text/plain; version=0.0.4; charset=utf-8";

    /// Every metric: its Prometheus name, type, help text and value. A new field is one line
    /// here.
    #[rustfmt::skip]
    fn series(&self) -> impl Iterator<Item = (&'static str, Kind, &'static str, u64)> {
        use Kind::{Counter, Gauge};
        [
            ("durable_calls_total", Counter, "Calls run (shared and exclusive; alarm runs not included).", self.calls),
            ("durable_activations_total", Counter, "Object instances built (first calls, after eviction, after a reset).", self.activations),
            ("durable_evictions_total", Counter, "Objects evicted after their idle timeout.", self.evictions),
            ("durable_overloads_total", Counter, "Calls refused because an object's queue was full.", self.overloads),
            ("durable_alarm_runs_total", Counter, "Alarm handler runs (retries included).", self.alarm_runs),
            ("durable_alarm_failures_total", Counter, "Alarm handler runs that failed (error or panic).", self.alarm_failures),
            ("durable_live_objects", Gauge, "Objects live in memory now (activated, not evicted).", self.live_objects),
            ("durable_syncs_total", Counter, "Syncs of storage completed.", self.syncs),
            ("durable_websockets_held", Gauge, "WebSockets this runtime holds open now.", self.websockets_held),
            ("durable_websocket_events_total", Counter, "WebSocket messages and closes handled by objects.", self.websocket_events),
            ("durable_shards_owned", Gauge, "Cluster shards this node owns now.", self.shards_owned),
            ("durable_calls_forwarded_total", Counter, "Calls sent on to the cluster node owning their object.", self.calls_forwarded),
        ]
        .into_iter()
    }

    /// The counters in the Prometheus text exposition format (version 0.0.4), for a
    /// `/metrics` endpoint: each metric with its `# HELP` and `# TYPE` lines, then its value.
    /// Serve it with [`PROMETHEUS_CONTENT_TYPE`](Metrics::PROMETHEUS_CONTENT_TYPE).
    ///
    /// | metric | type | field |
    /// |---|---|---|
    /// | `durable_calls_total` | counter | [`calls`](Metrics::calls) |
    /// | `durable_activations_total` | counter | [`activations`](Metrics::activations) |
    /// | `durable_evictions_total` | counter | [`evictions`](Metrics::evictions) |
    /// | `durable_overloads_total` | counter | [`overloads`](Metrics::overloads) |
    /// | `durable_alarm_runs_total` | counter | [`alarm_runs`](Metrics::alarm_runs) |
    /// | `durable_alarm_failures_total` | counter | [`alarm_failures`](Metrics::alarm_failures) |
    /// | `durable_live_objects` | gauge | [`live_objects`](Metrics::live_objects) |
    /// | `durable_syncs_total` | counter | [`syncs`](Metrics::syncs) |
    /// | `durable_websockets_held` | gauge | [`websockets_held`](Metrics::websockets_held) |
    /// | `durable_websocket_events_total` | counter | [`websocket_events`](Metrics::websocket_events) |
    /// | `durable_shards_owned` | gauge | [`shards_owned`](Metrics::shards_owned) |
    /// | `durable_calls_forwarded_total` | counter | [`calls_forwarded`](Metrics::calls_forwarded) |
    ///
    /// ```
    /// use durable_runtime::{durable_object, Context, Metrics, Result, Runtime};
    ///
    /// #[durable_object]
    /// pub struct Counter { ctx: Context }
    ///
    /// #[durable_object]
    /// impl Counter {
    ///     pub fn new(ctx: Context) -> Self { Counter { ctx } }
    ///     pub async fn get(&self) -> Result<i64> {
    ///         Ok(self.ctx.storage().get("value")?.unwrap_or(0))
    ///     }
    /// }
    ///
    /// # #[tokio::main] async fn main() -> Result<()> {
    /// let rt = Runtime::in_memory();
    /// rt.namespace::<Counter>().get_by_name("A").get().await?;
    ///
    /// let text = rt.metrics().to_prometheus();
    /// assert!(text.contains("# TYPE durable_calls_total counter\n"));
    /// assert!(text.lines().any(|line| line == "durable_calls_total 1"));
    /// assert!(text.lines().any(|line| line == "durable_live_objects 1"));
    /// assert_eq!(Metrics::PROMETHEUS_CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8");
    /// # rt.shutdown().await }
    /// ```
    pub fn to_prometheus(&self) -> String {
        let mut out = String::new();
        for (name, kind, help, value) in self.series() {
            // Writing to a String cannot fail.
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {}", kind.name());
            let _ = writeln!(out, "{name} {value}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_is_rendered_once_with_its_value() {
        let m = Metrics {
            calls: 1,
            activations: 2,
            evictions: 3,
            overloads: 4,
            alarm_runs: 5,
            alarm_failures: 6,
            live_objects: 7,
            syncs: 8,
            websockets_held: 9,
            websocket_events: 10,
            shards_owned: 11,
            calls_forwarded: 12,
        };
        let text = m.to_prometheus();
        let expected = [
            ("durable_calls_total", "counter", 1),
            ("durable_activations_total", "counter", 2),
            ("durable_evictions_total", "counter", 3),
            ("durable_overloads_total", "counter", 4),
            ("durable_alarm_runs_total", "counter", 5),
            ("durable_alarm_failures_total", "counter", 6),
            ("durable_live_objects", "gauge", 7),
            ("durable_syncs_total", "counter", 8),
            ("durable_websockets_held", "gauge", 9),
            ("durable_websocket_events_total", "counter", 10),
            ("durable_shards_owned", "gauge", 11),
            ("durable_calls_forwarded_total", "counter", 12),
        ];
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3 * expected.len(), "{text}");
        for (chunk, (name, kind, value)) in lines.chunks(3).zip(expected) {
            assert!(chunk[0].starts_with(&format!("# HELP {name} ")), "{text}");
            assert_eq!(chunk[1], format!("# TYPE {name} {kind}"));
            assert_eq!(chunk[2], format!("{name} {value}"));
        }
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn help_texts_need_no_escaping() {
        for (name, _, help, _) in Metrics::default().series() {
            assert!(
                !help.contains(['\\', '\n']) && !help.is_empty(),
                "{name}: {help:?}"
            );
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{name}"
            );
        }
    }
}
