//! A blocking handle on a node's control plane (`heimdall.v1.Control`, health, reflection)
//! for the integration tests, over the generated tonic clients of heimdall-proto.
//!
//! [`Control`] owns a small tokio runtime so tests stay plain blocking functions; [`authed`]
//! builds a request carrying the test admin token ([`TEST_ADMIN_TOKEN`]) and an actor name,
//! [`with_token`] one with any token or none.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use heimdall_proto::v1::ConfigGetRequest;
use heimdall_proto::v1::control_client::ControlClient;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};

use crate::node::TEST_ADMIN_TOKEN;

/// The actor name tests send (it shows in the config history).
pub const TEST_ACTOR: &str = "tester@heimdall-tests";

/// Deadline of one control call.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A request with the test admin token and [`TEST_ACTOR`].
pub fn authed<T>(message: T) -> Request<T> {
    with_token(message, Some(TEST_ADMIN_TOKEN))
}

/// A request with `token` as bearer token (None: no authorization header) and [`TEST_ACTOR`].
pub fn with_token<T>(message: T, token: Option<&str>) -> Request<T> {
    let mut request = Request::new(message);
    request.set_timeout(CALL_TIMEOUT);
    let metadata = request.metadata_mut();
    if let Some(value) = token.and_then(|t| format!("Bearer {t}").parse().ok()) {
        metadata.insert("authorization", value);
    }
    if let Ok(actor) = TEST_ACTOR.parse() {
        metadata.insert("x-heimdall-actor", actor);
    }
    request
}

/// A blocking client of one node's gRPC port.
#[derive(Debug)]
pub struct Control {
    /// Runs the async tonic calls.
    runtime: tokio::runtime::Runtime,
    /// The (lazily connecting) channel to the node.
    channel: Channel,
    /// The node's gRPC address, for messages.
    addr: SocketAddr,
}

impl Control {
    /// A client of the node whose gRPC server listens on `addr` (connects on first use).
    pub fn new(addr: SocketAddr) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("building the client runtime")?;
        let channel = {
            let _guard = runtime.enter();
            Endpoint::from_shared(format!("http://{addr}"))?
                .connect_timeout(Duration::from_secs(5))
                .connect_lazy()
        };
        Ok(Self {
            runtime,
            channel,
            addr,
        })
    }

    /// The node's gRPC address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The channel, for the health and reflection clients.
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// Runs one Control call made by `call` on a fresh client and returns the message.
    pub fn call<T, F>(&self, call: impl FnOnce(ControlClient<Channel>) -> F) -> Result<T, Status>
    where
        F: Future<Output = Result<Response<T>, Status>>,
    {
        let client = ControlClient::new(self.channel.clone());
        self.runtime
            .block_on(call(client))
            .map(Response::into_inner)
    }

    /// Runs any future on the client's runtime.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// Waits until the node's cluster configuration has a version (>= 1): a node reports
    /// ready on DNS before the bootstrap write seeding the settings from its file commits,
    /// and a test write that beat it would make the seed give up (its compare-and-set
    /// expects version 0). Returns the version.
    pub fn wait_seeded(&self, deadline: Duration) -> Result<u64> {
        let (version, _) = crate::wait_for(deadline, "the seeded cluster configuration", || {
            let request = ConfigGetRequest {
                key: String::new(),
                local: false,
            };
            self.call(|mut c| async move { c.config_get(authed(request)).await })
                .ok()
                .map(|reply| reply.version)
                .filter(|version| *version >= 1)
        })?;
        Ok(version)
    }
}
