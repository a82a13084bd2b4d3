//! A fake HTTP server for tests that need the CLI to talk to something other than Mandate: a
//! thread on a std `TcpListener` that records every request line and answers from a closure.
//! One request per connection (`connection: close`), which is all the CLI's client needs.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub body: String,
    /// Header names (lower-case) and values, in order.
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// Whether the request carried header `name` (lower-case) with exactly `value`.
    #[allow(dead_code)] // not every test binary that includes `common` asks
    pub fn has_header(&self, name: &str, value: &str) -> bool {
        self.headers.iter().any(|(k, v)| k == name && v == value)
    }
}

/// What the fake answers: HTTP status and a JSON body.
pub type Answer = (u16, String);

/// A running fake server. The thread stops with the test process.
pub struct Fake {
    pub url: String,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl Fake {
    /// Starts a fake on a free loopback port; `answer` gets the request and the fake's own URL.
    pub fn start(answer: impl Fn(&Request, &str) -> Answer + Send + 'static) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a fake server");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (seen, base) = (requests.clone(), url.clone());
        std::thread::spawn(move || {
            for sock in listener.incoming().flatten() {
                if let Some(req) = read_request(&sock) {
                    seen.lock().unwrap().push(req.clone());
                    let (status, body) = answer(&req, &base);
                    respond(sock, status, &body);
                }
            }
        });
        Fake { url, requests }
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// The requests with this method.
    pub fn with_method(&self, method: &str) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == method)
            .collect()
    }
}

fn read_request(sock: &TcpStream) -> Option<Request> {
    let mut r = BufReader::new(sock.try_clone().ok()?);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut length = 0usize;
    let mut headers = vec![];
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).ok()? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
        if let Some((name, value)) = h.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
            if name.trim().eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0u8; length];
    r.read_exact(&mut body).ok()?;
    Some(Request {
        method,
        path,
        body: String::from_utf8_lossy(&body).into_owned(),
        headers,
    })
}

fn respond(mut sock: TcpStream, status: u16, body: &str) {
    let resp = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = sock.write_all(resp.as_bytes());
    let _ = sock.flush();
}

/// RFC 8414 metadata naming `issuer`, with a token endpoint and JWKS at `endpoints`.
pub fn metadata(issuer: &str, endpoints: &str) -> String {
    serde_json::json!({
        "issuer": issuer,
        "token_endpoint": format!("{endpoints}/oauth2/token"),
        "jwks_uri": format!("{endpoints}/oauth2/jwks"),
    })
    .to_string()
}
