//! The counter service over real TCP on loopback: exact status, content type and body of
//! every route, the metrics route, and counts that survive a runtime restart on fjall.

use std::collections::HashMap;
use std::net::SocketAddr;

mod common;

use common::{assert_json, assert_text, count, send};
use durable_examples::{
    counter_app, metrics_app, Counter, APPLICATION_JSON, SELECT_NAME, TEXT_PLAIN,
};
use durable_runtime::{Metrics, Runtime};

/// The seed's missing-name text, spelled out here so the constant cannot drift from it.
const SEED_SELECT_NAME: &str = "Select a Durable Object to contact by using the `name` URL query string parameter, for example, ?name=A";

/// The counter service on a free port of 127.0.0.1.
async fn serve(rt: &Runtime) -> common::Server {
    common::Server::serve(counter_app(rt.namespace::<Counter>()).merge(metrics_app(rt.clone())))
        .await
}

#[test]
fn constants_are_the_seeds() {
    assert_eq!(SELECT_NAME, SEED_SELECT_NAME);
    assert_eq!(TEXT_PLAIN, "text/plain;charset=UTF-8");
    assert_eq!(APPLICATION_JSON, "application/json");
}

#[tokio::test]
async fn seed_routes() {
    let rt = Runtime::in_memory();
    let server = serve(&rt).await;
    let addr = server.addr;

    assert_text(&send(addr, "GET", "/?name=A").await, 200, &count("A", 0));
    assert_text(
        &send(addr, "GET", "/increment?name=A").await,
        200,
        &count("A", 1),
    );
    assert_text(
        &send(addr, "GET", "/increment?name=A").await,
        200,
        &count("A", 2),
    );
    assert_text(&send(addr, "GET", "/?name=A").await, 200, &count("A", 2));
    assert_text(
        &send(addr, "GET", "/decrement?name=A").await,
        200,
        &count("A", 1),
    );
    // Each name is its own object.
    assert_text(
        &send(addr, "GET", "/decrement?name=B").await,
        200,
        &count("B", -1),
    );
    assert_text(&send(addr, "GET", "/?name=A").await, 200, &count("A", 1));
    // Like the Worker's fetch, the seed routes ignore the method.
    assert_text(
        &send(addr, "POST", "/increment?name=A").await,
        200,
        &count("A", 2),
    );

    server.stop().await;
    rt.shutdown().await.unwrap();
}

#[tokio::test]
async fn missing_name_and_not_found() {
    let rt = Runtime::in_memory();
    let server = serve(&rt).await;
    let addr = server.addr;

    // No name, an empty name, another parameter: the name check comes before the path's.
    for target in [
        "/",
        "/?name=",
        "/?other=A",
        "/increment",
        "/decrement?name=",
        "/nowhere",
        "/nowhere?x=1",
    ] {
        assert_text(&send(addr, "GET", target).await, 200, SEED_SELECT_NAME);
    }
    // A name, but another path: 404.
    for target in [
        "/nowhere?name=A",
        "/increment/?name=A",
        "/Increment?name=A",
        "//?name=A",
        "/A/value/?name=A",
    ] {
        assert_text(&send(addr, "GET", target).await, 404, "Not found");
    }
    // Nothing above touched A.
    assert_text(&send(addr, "GET", "/?name=A").await, 200, &count("A", 0));

    server.stop().await;
    rt.shutdown().await.unwrap();
}

#[tokio::test]
async fn names_are_url_decoded_like_url_search_params() {
    let rt = Runtime::in_memory();
    let server = serve(&rt).await;
    let addr = server.addr;

    assert_text(
        &send(addr, "GET", "/increment?name=a%20b").await,
        200,
        &count("a b", 1),
    );
    // `+` is a space too: the same object.
    assert_text(
        &send(addr, "GET", "/increment?name=a+b").await,
        200,
        &count("a b", 2),
    );
    // UTF-8 escapes; the first `name` wins, as with `searchParams.get`.
    assert_text(
        &send(addr, "GET", "/?x=1&name=%C3%A9t%C3%A9&name=B").await,
        200,
        &count("été", 0),
    );
    // Escaped separators stay in the name.
    assert_text(
        &send(addr, "GET", "/increment?name=x%26y%3Dz").await,
        200,
        &count("x&y=z", 1),
    );
    // The JSON routes decode the path segment: `/a%20b/value` is the same counter.
    assert_json(&send(addr, "GET", "/a%20b/value").await, 2);

    server.stop().await;
    rt.shutdown().await.unwrap();
}

#[tokio::test]
async fn json_routes() {
    let rt = Runtime::in_memory();
    let server = serve(&rt).await;
    let addr = server.addr;

    assert_json(&send(addr, "GET", "/A/value").await, 0);
    assert_json(&send(addr, "POST", "/A/increment").await, 1);
    assert_json(&send(addr, "POST", "/A/increment").await, 2);
    assert_json(&send(addr, "POST", "/A/decrement").await, 1);
    assert_json(&send(addr, "GET", "/A/value").await, 1);
    assert_json(&send(addr, "POST", "/C/decrement").await, -1);
    // The JSON and the seed routes share the objects.
    assert_text(&send(addr, "GET", "/?name=A").await, 200, &count("A", 1));
    assert_text(
        &send(addr, "GET", "/increment?name=A").await,
        200,
        &count("A", 2),
    );
    assert_json(&send(addr, "GET", "/A/value").await, 2);

    // Another method on a JSON path falls back to the seed's logic: no name, then 404.
    assert_text(
        &send(addr, "GET", "/A/increment").await,
        200,
        SEED_SELECT_NAME,
    );
    assert_text(&send(addr, "POST", "/A/value").await, 200, SEED_SELECT_NAME);
    assert_text(
        &send(addr, "GET", "/A/decrement?name=A").await,
        404,
        "Not found",
    );
    assert_text(
        &send(addr, "PUT", "/A/value?name=A").await,
        404,
        "Not found",
    );
    // Nothing above changed A.
    assert_json(&send(addr, "GET", "/A/value").await, 2);

    server.stop().await;
    rt.shutdown().await.unwrap();
}

#[tokio::test]
async fn counts_survive_a_restart_on_fjall() {
    let dir = tempfile::tempdir().unwrap();

    // First life: shut down gracefully.
    let rt = Runtime::builder().data_dir(dir.path()).open().unwrap();
    let server = serve(&rt).await;
    for n in 1..=3 {
        assert_text(
            &send(server.addr, "GET", "/increment?name=A").await,
            200,
            &count("A", n),
        );
    }
    assert_json(&send(server.addr, "POST", "/B/decrement").await, -1);
    server.stop().await;
    rt.shutdown().await.unwrap();

    // Second life: the counts are there; then the runtime is only dropped.
    let rt = Runtime::builder().data_dir(dir.path()).open().unwrap();
    let server = serve(&rt).await;
    assert_text(
        &send(server.addr, "GET", "/?name=A").await,
        200,
        &count("A", 3),
    );
    assert_json(&send(server.addr, "GET", "/B/value").await, -1);
    assert_json(&send(server.addr, "POST", "/A/increment").await, 4);
    server.stop().await;
    drop(rt);

    // Third life: the write of the dropped runtime was durable before its reply.
    let rt = Runtime::builder().data_dir(dir.path()).open().unwrap();
    let server = serve(&rt).await;
    assert_json(&send(server.addr, "GET", "/A/value").await, 4);
    assert_text(
        &send(server.addr, "GET", "/decrement?name=A").await,
        200,
        &count("A", 3),
    );
    server.stop().await;
    rt.shutdown().await.unwrap();
}

/// `GET /metrics`, checked for the Prometheus text format: each sample's value by name.
async fn metrics(addr: SocketAddr) -> HashMap<String, u64> {
    let reply = send(addr, "GET", "/metrics").await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(
        reply.content_type.as_deref(),
        Some("text/plain; version=0.0.4; charset=utf-8"),
        "{reply:?}"
    );
    assert_eq!(
        Metrics::PROMETHEUS_CONTENT_TYPE,
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = reply.body();
    let mut samples = HashMap::new();
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let (name, value) = line.split_once(' ').expect("`name value`");
        let value = value.parse().unwrap_or_else(|_| panic!("a number: {line}"));
        assert!(
            samples.insert(name.to_owned(), value).is_none(),
            "{name} twice"
        );
    }
    for (name, kind) in [
        ("durable_calls_total", "counter"),
        ("durable_activations_total", "counter"),
        ("durable_evictions_total", "counter"),
        ("durable_overloads_total", "counter"),
        ("durable_alarm_runs_total", "counter"),
        ("durable_alarm_failures_total", "counter"),
        ("durable_live_objects", "gauge"),
        ("durable_syncs_total", "counter"),
    ] {
        let has = |wanted: String| text.lines().any(|line| line == wanted);
        assert!(
            has(format!("# TYPE {name} {kind}")),
            "no TYPE of {name}:\n{text}"
        );
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "no HELP of {name}:\n{text}"
        );
        assert!(samples.contains_key(name), "no {name} sample:\n{text}");
    }
    samples
}

#[tokio::test]
async fn metrics_route() {
    let rt = Runtime::in_memory();
    let server = serve(&rt).await;
    let addr = server.addr;

    let before = metrics(addr).await;
    assert_eq!(before["durable_calls_total"], 0);
    assert_eq!(before["durable_live_objects"], 0);

    // Four calls, on two objects.
    for n in 1..=3 {
        assert_text(
            &send(addr, "GET", "/increment?name=A").await,
            200,
            &count("A", n),
        );
    }
    assert_json(&send(addr, "GET", "/B/value").await, 0);

    let after = metrics(addr).await;
    assert_eq!(after["durable_calls_total"], 4, "{after:?}");
    assert!(after["durable_activations_total"] >= 2, "{after:?}");
    assert!(after["durable_live_objects"] <= 2, "{after:?}");
    assert!(
        after["durable_syncs_total"] >= 1,
        "3 writes were synced: {after:?}"
    );
    // The route reads the runtime's counters.
    assert_eq!(after["durable_activations_total"], rt.metrics().activations);

    server.stop().await;
    rt.shutdown().await.unwrap();
}
