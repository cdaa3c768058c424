//! HTTP to objects: `fetch` through `ObjectStub::fetch`, in this process and across a
//! connection, and `durable_runtime::axum::forward` behind a real axum server.

use std::net::SocketAddr;

use axum::extract::{Path, Request, State};
use axum::response::Response as AxumResponse;
use axum::routing::any;
use durable_runtime::http::{
    header, Bytes, Method, Request as ObjectRequest, Response, StatusCode,
};
use durable_runtime::{
    durable_object, Context, Error, ErrorKind, Namespace, ObjectStub, Result, Runtime,
};
use durable_tests::{server_and_front, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "fetch-test-secret";

/// The seed's counter, fetch version: `/increment`, `/decrement`, `/` (the value).
#[durable_object]
pub struct Site {
    ctx: Context,
}

#[durable_object]
impl Site {
    pub fn new(ctx: Context) -> Self {
        Site { ctx }
    }

    pub async fn fetch(&mut self, request: ObjectRequest) -> Result<Response> {
        let mut value: i64 = self.ctx.storage().get("value")?.unwrap_or(0);
        // The last segment: behind axum, the path is the client's whole path.
        let last = request.uri().path().rsplit('/').next().unwrap_or("");
        match (request.method(), last) {
            (&Method::POST, "echo") => {
                let mut response = Response::new(request.body().clone());
                for (name, v) in request.headers() {
                    if name.as_str().starts_with("x-") {
                        response.headers_mut().append(name.clone(), v.clone());
                    }
                }
                return Ok(response);
            }
            (_, "increment") => value += 1,
            (_, "decrement") => value -= 1,
            (_, "fail") => return Err(Error::app("Teapot", "no coffee here")),
            (_, "") => {}
            _ => {
                return Ok(Response::builder()
                    .status(StatusCode::NOT_FOUND)
                    .body(Bytes::from_static(b"Not found"))?)
            }
        }
        self.ctx.storage_mut().put("value", &value)?;
        Ok(Response::builder()
            .header(header::CONTENT_TYPE, "text/plain")
            .body(value.to_string().into())?)
    }

    /// An ordinary call beside `fetch`.
    pub async fn value(&self) -> Result<i64> {
        Ok(self.ctx.storage().get("value")?.unwrap_or(0))
    }
}

fn get(path: &str) -> ObjectRequest {
    ObjectRequest::get(path).body(Bytes::new()).unwrap()
}

async fn fetch_all(stub: &SiteStub) {
    let r = within("increment", ObjectStub::fetch(stub, get("/increment"))).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[header::CONTENT_TYPE], "text/plain");
    assert_eq!(r.body().as_ref(), b"1");
    let r = within("increment", ObjectStub::fetch(stub, get("/increment"))).await;
    assert_eq!(r.body().as_ref(), b"2");
    let r = within("decrement", ObjectStub::fetch(stub, get("/decrement"))).await;
    assert_eq!(r.body().as_ref(), b"1");
    assert_eq!(within("value", stub.value()).await, 1);
    let r = within("not found", ObjectStub::fetch(stub, get("/nope"))).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(r.body().as_ref(), b"Not found");

    let echo = ObjectRequest::post("/echo")
        .header("x-one", "a")
        .header("x-one", "b")
        .header("other", "dropped")
        .body(Bytes::from(vec![7u8; 100_000]))
        .unwrap();
    let r = within("echo", ObjectStub::fetch(stub, echo)).await;
    assert_eq!(r.body().len(), 100_000);
    assert!(r.body().iter().all(|&b| b == 7));
    let ones: Vec<_> = r.headers().get_all("x-one").iter().collect();
    assert_eq!(ones, ["a", "b"]);
    assert!(r.headers().get("other").is_none());

    let err = ObjectStub::fetch(stub, get("/fail")).await.unwrap_err();
    assert_eq!(err.app_kind(), Some("Teapot"));
    assert!(err.is_remote());
    // The inherent stub method is the same call.
    let r = within("inherent fetch", stub.fetch(get("/"))).await;
    assert_eq!(r.body().as_ref(), b"1");
}

/// An object server holding `Site`s, and a front end connected to it.
fn pair() -> (Runtime, Runtime) {
    server_and_front(Runtime::builder().in_memory().register::<Site>(), SECRET)
}

#[tokio::test]
async fn fetch_in_this_process() {
    let rt = Runtime::in_memory();
    fetch_all(&rt.namespace::<Site>().get_by_name("a")).await;
}

#[tokio::test]
async fn fetch_across_a_connection() {
    let (server, front) = pair();
    fetch_all(&front.namespace::<Site>().get_by_name("a")).await;
    // The object lives in the server: its count is the one the front end made.
    let local = server.namespace::<Site>().get_by_name("a");
    assert_eq!(within("value at the server", local.value()).await, 1);
}

#[tokio::test]
async fn a_request_over_the_frame_bound_is_refused_and_the_connection_goes_on() {
    let server = Runtime::builder()
        .in_memory()
        .register::<Site>()
        .listen("127.0.0.1:0")
        .secret(SECRET)
        .max_frame_bytes(64 * 1024)
        .open()
        .unwrap();
    let front = Runtime::builder()
        .connect(server.local_addr().unwrap().to_string())
        .secret(SECRET)
        .max_frame_bytes(64 * 1024)
        .open()
        .unwrap();
    let stub = front.namespace::<Site>().get_by_name("big");
    let big = ObjectRequest::post("/echo")
        .body(Bytes::from(vec![0u8; 100_000]))
        .unwrap();
    let err = ObjectStub::fetch(&stub, big).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    let r = within("after", ObjectStub::fetch(&stub, get("/increment"))).await;
    assert_eq!(r.body().as_ref(), b"1");
}

async fn route(
    State(sites): State<Namespace<Site>>,
    Path((name, _)): Path<(String, String)>,
    request: Request,
) -> AxumResponse {
    durable_runtime::axum::forward(&sites.get_by_name(&name), request).await
}

async fn serve(sites: Namespace<Site>) -> SocketAddr {
    let app = axum::Router::new()
        .route("/site/{name}/{*rest}", any(route))
        .with_state(sites);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// One raw HTTP/1.1 exchange: status and body.
async fn http(addr: SocketAddr, method: &str, target: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{method} {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = std::str::from_utf8(&raw[..split]).unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, raw[split + 4..].to_vec())
}

#[tokio::test]
async fn axum_forwards_requests_locally_and_remotely() {
    let local = Runtime::in_memory();
    let (server, front) = pair();
    for rt in [&local, &front] {
        let addr = serve(rt.namespace::<Site>()).await;
        // The object sees the request's path as sent by the client.
        let (status, body) = http(addr, "GET", "/site/a/x", b"").await;
        assert_eq!(status, 404, "{}", String::from_utf8_lossy(&body));
        let (status, body) = http(addr, "POST", "/site/a/increment", b"").await;
        assert_eq!((status, body.as_slice()), (200, b"1".as_slice()));
        let (status, body) = http(addr, "POST", "/site/b/increment", b"").await;
        assert_eq!((status, body.as_slice()), (200, b"1".as_slice()));
        // An application error is a 500 without its text.
        let (status, body) = http(addr, "GET", "/site/a/fail", b"").await;
        assert_eq!(status, 500);
        assert!(!String::from_utf8_lossy(&body).contains("coffee"));
    }
    // The server is gone: the front end answers 503.
    let addr = serve(front.namespace::<Site>()).await;
    server.shutdown().await.unwrap();
    let (status, _) = http(addr, "GET", "/site/a/increment", b"").await;
    assert_eq!(status, 503);
}
