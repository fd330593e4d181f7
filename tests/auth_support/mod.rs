//! Shared by the authentication tests (tests/auth.rs, tests/auth_hostile.rs):
//! a real instance with authentication on, served on a loopback port, and a
//! raw HTTP/1.1 client that can send any header bytes (several
//! `Authorization` headers, opaque bytes, oversized values), as a hostile
//! client would.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use accounts::app::InstanceBuilder;
use accounts::auth::{AuthConfig, Secret, TokenSpec, Verifier, mint};
use accounts::domain::{OwnerId, Timestamp};
use accounts::engine::FixedClock;
use accounts::http::{ErrorBody, ServeConfig, WWW_AUTHENTICATE_BEARER};
use accounts::store::{EventStore, MemoryStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

/// The shared secret of the HS256 instances (long enough: 32 bytes at least).
pub const SECRET: &str = "tests-only secret, at least 32 bytes long";

/// 2026-11-26T10:00:00.000Z: the instance's clock, and when tokens are issued.
pub const START_MILLIS: i64 = 1_795_687_200_000;

pub fn start() -> Timestamp {
    Timestamp::from_unix_millis(START_MILLIS)
}

/// A real instance with authentication on, on a free loopback port.
pub struct Server {
    pub address: SocketAddr,
    pub clock: Arc<FixedClock>,
    pub config: AuthConfig,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    /// HS256 with [`SECRET`], over the memory store.
    pub async fn hs256() -> Server {
        Server::start(Arc::new(MemoryStore::new()), AuthConfig::hs256(SECRET)).await
    }

    pub async fn start(store: Arc<dyn EventStore>, config: AuthConfig) -> Server {
        let clock = Arc::new(FixedClock::new(start()));
        let verifier = Verifier::new(&config).expect("a usable auth configuration");
        let instance = InstanceBuilder::new()
            .store(store)
            .clock(clock.clone())
            .seed(13)
            .auth(verifier)
            .serve_config(ServeConfig {
                shutdown_grace: Duration::from_millis(200),
                ..ServeConfig::default()
            })
            .build();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let address = listener.local_addr().expect("a bound address");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(instance.serve(listener, async move {
            let _ = stopped.await;
        }));
        Server {
            address,
            clock,
            config,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// A token for `owner` (HS256 instances), with the instance's issuer and
    /// audience, issued now, valid an hour.
    pub fn owner_token(&self, owner: OwnerId) -> String {
        self.mint(&TokenSpec::owner(owner, start()))
    }

    pub fn admin_token(&self) -> String {
        self.mint(&TokenSpec::owner(OwnerId::from_uuid(uuid::Uuid::nil()), start()).admin())
    }

    pub fn mint(&self, spec: &TokenSpec) -> String {
        let spec = TokenSpec {
            issuer: spec.issuer.clone().or(self.config.issuer.clone()),
            audience: spec.audience.clone().or(self.config.audience.clone()),
            ..spec.clone()
        };
        mint(&Secret::new(SECRET), &spec).expect("minted")
    }

    /// One request with these headers (raw bytes, sent as given) on a fresh
    /// connection; `None` when the server closed it without an answer.
    pub async fn send_raw(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &[u8])],
    ) -> Option<Reply> {
        let mut request = format!("{method} {target} HTTP/1.1\r\nHost: test\r\n").into_bytes();
        for (name, value) in headers {
            request.extend_from_slice(name.as_bytes());
            request.extend_from_slice(b": ");
            request.extend_from_slice(value);
            request.extend_from_slice(b"\r\n");
        }
        request.extend_from_slice(b"Connection: close\r\n\r\n");
        let mut stream = tokio::net::TcpStream::connect(self.address)
            .await
            .expect("connect");
        // A server that refuses an oversized head may close before reading
        // all of it; what it answered is still read below.
        let _ = stream.write_all(&request).await;
        let mut answer = Vec::new();
        let read =
            tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut answer)).await;
        assert!(read.is_ok(), "no answer within 20 s to {method} {target}");
        Reply::parse(&answer)
    }

    /// A request with at most one `Authorization: Bearer <token>` header.
    pub async fn send(&self, method: &str, target: &str, token: Option<&str>) -> Reply {
        let value = token.map(|token| format!("Bearer {token}"));
        let headers: Vec<(&str, &[u8])> = value
            .iter()
            .map(|value| ("Authorization", value.as_bytes()))
            .collect();
        self.send_raw(method, target, &headers)
            .await
            .unwrap_or_else(|| panic!("{method} {target}: the connection closed without an answer"))
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("the serve loop does not panic");
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// A parsed HTTP/1.1 answer.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    /// (lower-case name, value), in order.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    fn parse(bytes: &[u8]) -> Option<Reply> {
        let text = String::from_utf8_lossy(bytes);
        let (head, body) = text.split_once("\r\n\r\n")?;
        let mut lines = head.lines();
        let status = lines
            .next()?
            .strip_prefix("HTTP/1.1 ")?
            .get(..3)?
            .parse()
            .ok()?;
        let headers = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
            .collect();
        // Bodies here are small and never chunked (Content-Length).
        Some(Reply {
            status,
            headers,
            body: body.to_owned(),
        })
    }

    /// This answer as it would name `to` instead of `from` (same length).
    pub fn with_id(&self, from: uuid::Uuid, to: uuid::Uuid) -> Reply {
        Reply {
            body: self.body.replace(&from.to_string(), &to.to_string()),
            ..self.clone()
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(header, _)| header == name)
            .map(|(_, value)| value.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    /// The error answer of docs/API.md with this status and code: JSON
    /// `{"code", "message"}` in that order.
    pub fn assert_error(&self, status: u16, code: &str) -> ErrorBody {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(self.header("content-type"), Some("application/json"));
        let body: ErrorBody = serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not an error body ({e}): {:?}", self.body));
        assert_eq!(serde_json::to_string(&body).unwrap(), self.body);
        assert_eq!(body.code.as_str(), code, "{self:?}");
        body
    }

    /// A 401 with the RFC 6750 challenge and the JSON body.
    pub fn assert_unauthorized(&self) -> ErrorBody {
        let body = self.assert_error(401, "unauthorized");
        assert_eq!(
            self.header("www-authenticate"),
            Some(WWW_AUTHENTICATE_BEARER),
            "{self:?}"
        );
        body
    }
}

/// A UUID not used before in this test process (deterministic: a counter).
pub fn fresh() -> uuid::Uuid {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = u128::from(NEXT.fetch_add(1, Ordering::SeqCst));
    uuid::Uuid::from_u128(0xa17e_0000_0000_4000_8000_0000_0000_0000 | n)
}

pub fn fresh_owner() -> OwnerId {
    OwnerId::from_uuid(fresh())
}
