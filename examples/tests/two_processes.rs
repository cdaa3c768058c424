//! The seed's counter in two processes, as the README runs it: an object server
//! (`--listen`) and a front end (`--connect`) holding no counters, both the real example
//! binary, talking over loopback with a shared secret.

mod common;

use std::time::{Duration, Instant};

use common::{
    assert_json, assert_text, count, free_addr, send, start_example, wait_listening, Process,
};

fn start(args: &[&str]) -> Process {
    start_example("counter", args)
}

#[tokio::test]
async fn a_front_end_serves_the_seed_routes_from_an_object_server() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let (objects, server_http, front_http) = (free_addr(), free_addr(), free_addr());
    let (objects_s, server_http_s, front_http_s) = (
        objects.to_string(),
        server_http.to_string(),
        front_http.to_string(),
    );
    let server_args = [
        "--addr",
        &server_http_s,
        "--data-dir",
        data,
        "--listen",
        &objects_s,
        "--secret",
        "s3cret",
    ];
    let server = start(&server_args);
    let _front = start(&[
        "--addr",
        &front_http_s,
        "--connect",
        &objects_s,
        "--secret",
        "s3cret",
    ]);
    wait_listening(server_http).await;
    wait_listening(front_http).await;

    assert_text(
        &send(front_http, "GET", "/increment?name=A").await,
        200,
        &count("A", 1),
    );
    assert_text(
        &send(server_http, "GET", "/increment?name=A").await,
        200,
        &count("A", 2),
    );
    assert_text(
        &send(front_http, "GET", "/?name=A").await,
        200,
        &count("A", 2),
    );
    assert_json(&send(front_http, "POST", "/A/increment").await, 3);
    assert_json(&send(front_http, "GET", "/A/value").await, 3);
    assert_text(
        &send(front_http, "GET", "/decrement?name=A").await,
        200,
        &count("A", 2),
    );

    // The binary serves its runtime's counters: the object server ran the six calls above;
    // the front end holds no objects.
    let calls = |reply: common::Reply| {
        assert_eq!(reply.status, 200, "{reply:?}");
        assert_eq!(
            reply.content_type.as_deref(),
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
        let line = reply
            .body()
            .lines()
            .find(|l| l.starts_with("durable_calls_total "));
        let value = line.and_then(|l| l.split(' ').nth(1)?.parse::<u64>().ok());
        value.unwrap_or_else(|| panic!("no durable_calls_total: {reply:?}"))
    };
    assert_eq!(calls(send(server_http, "GET", "/metrics").await), 6);
    assert_eq!(calls(send(front_http, "GET", "/metrics").await), 0);

    // A front end with another secret is refused by the object server.
    let intruder_http = free_addr();
    let intruder_http_s = intruder_http.to_string();
    let _intruder = start(&[
        "--addr",
        &intruder_http_s,
        "--connect",
        &objects_s,
        "--secret",
        "wrong",
    ]);
    wait_listening(intruder_http).await;
    assert_eq!(
        send(intruder_http, "GET", "/increment?name=A").await.status,
        500
    );

    // The object server dies: the front end answers 503; it comes back: the front end
    // reconnects by itself, and the count is where it was.
    drop(server);
    assert_eq!(send(front_http, "GET", "/?name=A").await.status, 503);
    let _server = start(&server_args);
    wait_listening(server_http).await;
    let start = Instant::now();
    loop {
        let reply = send(front_http, "GET", "/increment?name=A").await;
        if reply.status == 200 {
            assert_text(&reply, 200, &count("A", 3));
            break;
        }
        assert_eq!(reply.status, 503, "{reply:?}");
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the front end never reconnected"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
