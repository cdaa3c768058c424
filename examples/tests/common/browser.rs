//! A headless Chromium for the tests, driven over WebDriver by `chromedriver`.
//!
//! ```ignore
//! let browser = Browser::start().await; // chromedriver + a first session
//! let other = browser.new_page().await; // a second, independent session (another user)
//! browser.goto(&url).await;
//! browser.type_into("#input", "hello").await;
//! browser.press_enter("#input").await;
//! browser.wait_until("document.querySelectorAll('li').length == 1", TIMEOUT).await;
//! assert_eq!(browser.texts("li").await, ["hello"]);
//! ```
//!
//! Needs Debian's `chromium` and `chromium-driver` (`/usr/bin/chromium`,
//! `/usr/bin/chromedriver`; the environment variables `CHROMIUM` and `CHROMEDRIVER` point
//! elsewhere). Without them [`Browser::start`] panics: a browser test never passes silently.
//! Each [`Browser`] runs its own chromedriver on a free loopback port, in its own process
//! group, killed with every Chromium it started when the `Browser` is dropped.

use std::fmt;
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::ops::Deref;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use fantoccini::wd::{Capabilities, WebDriverCompatibleCommand};
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};
use tempfile::TempDir;

/// Chromium's flags: headless, no sandbox (the tests may run as root), and nothing that
/// reaches for the network on its own.
const CHROMIUM_ARGS: &[&str] = &[
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1024,768",
];

/// How long chromedriver may take to listen.
const DRIVER_START: Duration = Duration::from_secs(30);

const INSTALL_HINT: &str = "install Debian's packages `chromium` and `chromium-driver` \
                            (`apt-get install chromium chromium-driver`), or set CHROMIUM and \
                            CHROMEDRIVER to their paths";

/// A chromedriver and the Chromium sessions it runs. Derefs to its first [`Page`].
pub struct Browser {
    driver: Child,
    /// `http://127.0.0.1:PORT`.
    driver_url: String,
    chromium: PathBuf,
    /// The driver's log and every session's profile; removed after the driver is killed.
    dir: TempDir,
    sessions: AtomicUsize,
    first: Option<Page>,
}

/// One Chromium session: its own profile, cookies and storage, as another user's browser.
pub struct Page {
    client: Client,
    name: String,
}

impl Browser {
    /// Starts chromedriver on a free port of 127.0.0.1, waits until it answers, and opens
    /// a first headless Chromium session.
    ///
    /// Panics if chromium or chromedriver is missing, naming the packages to install.
    pub async fn start() -> Browser {
        let chromedriver = locate("CHROMEDRIVER", "/usr/bin/chromedriver");
        let chromium = locate("CHROMIUM", "/usr/bin/chromium");
        Browser::start_with(&chromedriver, &chromium).await
    }

    /// [`Browser::start`] with explicit paths.
    pub async fn start_with(chromedriver: &Path, chromium: &Path) -> Browser {
        for (what, path) in [("chromedriver", chromedriver), ("chromium", chromium)] {
            assert!(
                path.is_file(),
                "{what} not found at {}: {INSTALL_HINT}",
                path.display()
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("browser-test-")
            .tempdir()
            .expect("a temporary directory for the browser");
        let log = File::create(dir.path().join("chromedriver.log")).expect("chromedriver's log");
        let port = free_port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("chromedriver's log"))
            .stderr(log)
            // Its own process group, so that dropping the browser kills every Chromium too.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {}: {e}: {INSTALL_HINT}",
                    chromedriver.display()
                )
            });
        let mut browser = Browser {
            driver,
            driver_url: format!("http://127.0.0.1:{port}"),
            chromium: chromium.to_owned(),
            dir,
            sessions: AtomicUsize::new(0),
            first: None,
        };
        browser.wait_for_driver(port).await;
        browser.first = Some(browser.new_page().await);
        browser
    }

    /// Waits until chromedriver answers its `/status` as ready (a bare TCP connection could
    /// be another process that took the port first); panics with its log if it exits or
    /// takes too long.
    async fn wait_for_driver(&mut self, port: u16) {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let start = Instant::now();
        loop {
            if let Some(status) = self.driver.try_wait().expect("chromedriver's status") {
                panic!(
                    "chromedriver exited ({status}) before answering:\n{}",
                    self.driver_log()
                );
            }
            if driver_ready(addr) {
                return;
            }
            assert!(
                start.elapsed() < DRIVER_START,
                "chromedriver did not listen on {addr} within {DRIVER_START:?}:\n{}",
                self.driver_log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Opens another Chromium session with a fresh profile: an independent user (its own
    /// cookies, storage and connections).
    pub async fn new_page(&self) -> Page {
        let n = self.sessions.fetch_add(1, Ordering::Relaxed);
        let profile = self.dir.path().join(format!("profile-{n}"));
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|&a| a.to_owned()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        let mut caps = Capabilities::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({ "binary": self.chromium, "args": args }),
        );
        // Keep the console's messages, for `Page::console_errors`.
        caps.insert("goog:loggingPrefs".into(), json!({ "browser": "ALL" }));
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&self.driver_url)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "chromedriver could not start {}: {e}\n{}",
                    self.chromium.display(),
                    self.driver_log()
                )
            });
        Page {
            client,
            name: format!("page {n}"),
        }
    }

    /// What chromedriver printed so far.
    fn driver_log(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("chromedriver.log"));
        format!("chromedriver's log:\n{}", log.unwrap_or_default())
    }
}

impl Deref for Browser {
    type Target = Page;

    fn deref(&self) -> &Page {
        self.first
            .as_ref()
            .expect("the first page is opened by start")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The whole process group: chromedriver and every Chromium process it started.
        let group = self.driver.id() as libc::pid_t;
        // SAFETY: kill(2) takes no pointers; a negative pid names the process group, which
        // is chromedriver's own (`process_group(0)` above) and so holds only its processes.
        unsafe { libc::kill(-group, libc::SIGKILL) };
        let _ = self.driver.wait();
        // `dir` (profiles and log) is removed after this, when the fields drop.
    }
}

impl fmt::Debug for Page {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl Page {
    /// Navigates to `url` and waits until it has loaded.
    pub async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("{self:?}: cannot load {url}: {e}"));
    }

    /// The value of the JavaScript expression `js` (a promise is awaited), as JSON.
    /// Statements go in a function: `(() => { ...; return x })()`.
    pub async fn eval(&self, js: &str) -> Value {
        self.try_eval(js)
            .await
            .unwrap_or_else(|e| panic!("{self:?}: `{js}` failed: {e}"))
    }

    async fn try_eval(&self, js: &str) -> Result<Value, fantoccini::error::CmdError> {
        let js = js.trim().trim_end_matches(';');
        self.client
            .execute(&format!("return (\n{js}\n);"), Vec::new())
            .await
    }

    /// Polls the JavaScript expression `js` every 50 ms until it is true. After `timeout`,
    /// panics with the expression, its last value or error, the URL and the page's text.
    pub async fn wait_until(&self, js: &str, timeout: Duration) {
        let start = Instant::now();
        let last = loop {
            let value = self.try_eval(&format!("!!(\n{js}\n)")).await;
            if matches!(value, Ok(Value::Bool(true))) {
                return;
            }
            if start.elapsed() >= timeout {
                break value;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let last = match last {
            Ok(value) => value.to_string(),
            Err(e) => format!("error: {e}"),
        };
        let url = match self.client.current_url().await {
            Ok(url) => url.to_string(),
            Err(e) => format!("unknown ({e})"),
        };
        let text = match self
            .try_eval("document.body ? document.body.innerText : ''")
            .await
        {
            Ok(Value::String(text)) => text,
            Ok(other) => other.to_string(),
            Err(e) => format!("unreadable ({e})"),
        };
        panic!(
            "{self:?}: `{js}` still not true after {timeout:?} (last: {last})\n\
             at {url}, whose text is:\n---\n{text}\n---"
        );
    }

    /// The first element matching `css`; panics if there is none.
    pub async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{self:?}: no element `{css}`: {e}"))
    }

    /// Types `text` into the element matching `css`, as a user would (key by key).
    pub async fn type_into(&self, css: &str, text: &str) {
        self.find(css)
            .await
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("{self:?}: cannot type into `{css}`: {e}"));
    }

    /// Presses Enter in the element matching `css`.
    pub async fn press_enter(&self, css: &str) {
        let enter = char::from(fantoccini::key::Key::Enter).to_string();
        self.find(css)
            .await
            .send_keys(&enter)
            .await
            .unwrap_or_else(|e| panic!("{self:?}: cannot press Enter in `{css}`: {e}"));
    }

    /// Clicks the element matching `css`.
    pub async fn click(&self, css: &str) {
        self.find(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("{self:?}: cannot click `{css}`: {e}"));
    }

    /// The text content of every element matching `css`, in document order.
    pub async fn texts(&self, css: &str) -> Vec<String> {
        let script =
            "return Array.from(document.querySelectorAll(arguments[0]), e => e.textContent);";
        let value = self
            .client
            .execute(script, vec![json!(css)])
            .await
            .unwrap_or_else(|e| panic!("{self:?}: cannot read `{css}`: {e}"));
        serde_json::from_value(value).expect("a list of strings")
    }

    /// The console's errors (`console.error`, uncaught exceptions, failed loads) since the
    /// last call.
    pub async fn console_errors(&self) -> Vec<String> {
        let entries = self
            .client
            .issue_cmd(BrowserLog)
            .await
            .unwrap_or_else(|e| panic!("{self:?}: cannot read the console: {e}"));
        let entries = entries.as_array().cloned().unwrap_or_default();
        entries
            .iter()
            .filter(|entry| entry["level"] == "SEVERE")
            .map(|entry| entry["message"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// The WebDriver client, for anything else.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Closes the session (and its Chromium) now, rather than when the browser drops.
    pub async fn close(self) {
        let _ = self.client.close().await;
    }
}

/// chromedriver's console log: `POST /session/{id}/se/log` with `{"type":"browser"}`.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(json!({"type": "browser"}).to_string()),
        )
    }
}

/// The program in environment variable `var`, else `default`; a bare name is looked up in
/// `PATH`.
fn locate(var: &str, default: &str) -> PathBuf {
    let Some(name) = std::env::var_os(var).filter(|v| !v.is_empty()) else {
        return PathBuf::from(default);
    };
    let path = PathBuf::from(&name);
    if path.components().count() > 1 {
        return path;
    }
    std::env::var_os("PATH")
        .and_then(|dirs| {
            std::env::split_paths(&dirs)
                .map(|dir| dir.join(&path))
                .find(|candidate| candidate.is_file())
        })
        .unwrap_or(path)
}

/// A port nothing listens on now, on 127.0.0.1.
/// Whether a WebDriver server at `addr` says it is ready (`GET /status`).
fn driver_ready(addr: SocketAddr) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let timeout = Some(Duration::from_secs(1));
    if stream.set_read_timeout(timeout).is_err() || stream.set_write_timeout(timeout).is_err() {
        return false;
    }
    // chromedriver answers HTTP/1.1 only, and keeps the connection open: read until the
    // answer says ready, or the server stops sending.
    let request = format!("GET /status HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut response = Vec::new();
    let mut chunk = [0u8; 4096];
    while let Ok(n @ 1..) = stream.read(&mut chunk) {
        response.extend_from_slice(&chunk[..n]);
        if String::from_utf8_lossy(&response).contains("\"ready\":true") {
            return true;
        }
    }
    false
}

fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("a free port");
    listener.local_addr().expect("its address").port()
}
