//! Helpers shared by the example's tests: a raw HTTP/1.1 client and the replies' checks, and
//! a headless Chromium ([`browser`]).

#![allow(dead_code)] // each test binary uses its own share of these

pub mod browser;

use std::net::SocketAddr;

use durable_examples::{APPLICATION_JSON, TEXT_PLAIN};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A parsed HTTP/1.1 response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn body(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap()
    }
}

/// Sends one raw HTTP/1.1 request (`Connection: close`) and reads the whole response.
pub async fn send(addr: SocketAddr, method: &str, target: &str) -> Reply {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    parse(&raw)
}

pub fn parse(raw: &[u8]) -> Reply {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete header block");
    let head = std::str::from_utf8(&raw[..split]).unwrap();
    let body = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let mut parts = status_line.splitn(3, ' ');
    assert_eq!(parts.next(), Some("HTTP/1.1"), "{status_line}");
    let status = parts.next().unwrap().parse().unwrap();
    let mut content_type = None;
    let mut content_length = None;
    for line in lines {
        let (name, value) = line.split_once(':').unwrap();
        let value = value.trim().to_owned();
        match name.to_ascii_lowercase().as_str() {
            "content-type" => content_type = Some(value),
            "content-length" => content_length = Some(value.parse::<usize>().unwrap()),
            "transfer-encoding" => panic!("unexpected transfer-encoding: {value}"),
            _ => {}
        }
    }
    assert_eq!(
        content_length,
        Some(body.len()),
        "content-length matches the body"
    );
    Reply {
        status,
        content_type,
        body,
    }
}

pub fn assert_text(reply: &Reply, status: u16, body: &str) {
    assert_eq!(reply.status, status, "{reply:?}");
    assert_eq!(reply.content_type.as_deref(), Some(TEXT_PLAIN), "{reply:?}");
    assert_eq!(reply.body(), body);
}

pub fn assert_json(reply: &Reply, value: i64) {
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(
        reply.content_type.as_deref(),
        Some(APPLICATION_JSON),
        "{reply:?}"
    );
    assert_eq!(reply.body(), format!("{{\"value\":{value}}}"));
}

pub fn count(name: &str, n: i64) -> String {
    format!("Durable Object '{name}' count: {n}")
}
