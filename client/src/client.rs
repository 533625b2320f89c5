//! [`Client`]: one connection to one node's control plane, a method per RPC.

use std::fmt;
use std::time::Duration;

use heimdall_proto::v1::control_client::ControlClient;
use heimdall_proto::v1::{
    CacheDumpRequest, CacheEntry, CacheFlushReply, CacheFlushRequest, CacheLoadReply,
    CacheLookupReply, CacheLookupRequest, ClusterAddNodeRequest, ClusterLeaderReply,
    ClusterLeaderRequest, ClusterMembersReply, ClusterMembersRequest, ClusterRemoveNodeRequest,
    ConfigChangeReply, ConfigGetReply, ConfigGetRequest, ConfigHistoryReply, ConfigHistoryRequest,
    ConfigRollbackRequest, ConfigSetRequest, StatsRequest, StatsSnapshot, StatusReply,
    StatusRequest, TopNamesReply, TopNamesRequest, UpstreamChangeRequest, UpstreamListReply,
    UpstreamListRequest, WatchStatsRequest,
};
use tokio_stream::Stream;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status, Streaming};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::error::{Error, LeaderHint, chain_text};
use crate::tls::TlsOptions;

/// The metadata key of the caller's name, recorded in the config history.
pub const ACTOR_METADATA: &str = "x-heimdall-actor";

/// The metadata key of the admin token (`Bearer <token>`).
pub const AUTHORIZATION_METADATA: &str = "authorization";

/// How long connecting may take unless the caller says otherwise.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a unary call may take unless the caller says otherwise (adding a node waits for it
/// to catch up, so this is generous).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// How a [`Client`] connects and what it sends with every call.
#[derive(Clone)]
pub struct ClientOptions {
    /// The admin token, sent as `authorization: Bearer <token>`; None sends none.
    pub token: Option<String>,
    /// The caller's name, sent as `x-heimdall-actor`; None sends none.
    pub actor: Option<String>,
    /// How long connecting may take.
    pub connect_timeout: Duration,
    /// How long a unary call may take (streams are bounded by their first answer only).
    pub request_timeout: Duration,
    /// The CA and client certificate for `https://` endpoints; None: the system's CA
    /// certificates and no client certificate.
    pub tls: Option<TlsOptions>,
}

impl Default for ClientOptions {
    /// No token, no actor, the default timeouts.
    fn default() -> Self {
        ClientOptions {
            token: None,
            actor: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            tls: None,
        }
    }
}

impl fmt::Debug for ClientOptions {
    /// Shows whether a token is set, never the token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientOptions")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("actor", &self.actor)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("tls", &self.tls)
            .finish()
    }
}

/// A connected client of one node's control plane. Cheap to clone (the channel is shared).
#[derive(Clone)]
pub struct Client {
    /// The endpoint as the caller named it (with a scheme), for error lines.
    endpoint: String,
    /// The options it was connected with, to reach a leader the same way.
    options: ClientOptions,
    /// The HTTP/2 channel.
    channel: Channel,
    /// `Bearer <token>`, checked once at connect time.
    authorization: Option<MetadataValue<Ascii>>,
    /// The actor name, checked once at connect time.
    actor: Option<MetadataValue<Ascii>>,
}

impl fmt::Debug for Client {
    /// The endpoint and options (the token redacted).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.endpoint)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// `endpoint` with `http://` in front when it names no scheme.
pub fn normalize_endpoint(endpoint: &str) -> String {
    let endpoint = endpoint.trim();
    if endpoint.contains("://") {
        endpoint.to_owned()
    } else {
        format!("http://{endpoint}")
    }
}

/// A server stream from one node, with its errors mapped to [`Error`].
#[derive(Debug)]
pub struct Replies<T> {
    /// The endpoint, for error lines.
    endpoint: String,
    /// The gRPC stream.
    inner: Streaming<T>,
}

impl<T> Replies<T> {
    /// The next message; None when the node ended the stream.
    pub async fn next(&mut self) -> Result<Option<T>, Error> {
        self.inner
            .message()
            .await
            .map_err(|status| Error::from_status(&self.endpoint, &status, None))
    }
}

impl Client {
    /// Connects to `endpoint` (`http://host:port`, or `https://host:port` over TLS with
    /// `options.tls`; a bare `host:port` gets `http://`).
    pub async fn connect(endpoint: &str, options: ClientOptions) -> Result<Client, Error> {
        let endpoint = normalize_endpoint(endpoint);
        let authorization = match &options.token {
            Some(token) => Some(metadata(&endpoint, "token", &format!("Bearer {token}"))?),
            None => None,
        };
        let actor = match &options.actor {
            Some(actor) => Some(metadata(&endpoint, "actor name", actor)?),
            None => None,
        };
        let mut target = Endpoint::from_shared(endpoint.clone())
            .map_err(|e| Error::InvalidEndpoint {
                endpoint: endpoint.clone(),
                reason: chain_text(&e),
            })?
            .connect_timeout(options.connect_timeout)
            .tcp_nodelay(true);
        if endpoint.starts_with("https://") {
            let tls = options.tls.clone().unwrap_or_default();
            target = target
                .tls_config(tls.client_config())
                .map_err(|e| Error::Tls {
                    endpoint: endpoint.clone(),
                    reason: chain_text(&e),
                })?;
        }
        let channel = match tokio::time::timeout(options.connect_timeout, target.connect()).await {
            Ok(Ok(channel)) => channel,
            Ok(Err(e)) => return Err(Error::from_transport(&endpoint, &e)),
            Err(_) => {
                return Err(Error::Unreachable {
                    endpoint,
                    reason: format!("no connection within {:?}", options.connect_timeout),
                });
            }
        };
        Ok(Client {
            endpoint,
            options,
            channel,
            authorization,
            actor,
        })
    }

    /// The endpoint this client talks to (with its scheme).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The generated client over the shared channel.
    fn control(&self) -> ControlClient<Channel> {
        ControlClient::new(self.channel.clone())
    }

    /// A request carrying the token, the actor and, when `unary`, the call deadline.
    fn request<T>(&self, message: T, unary: bool) -> Request<T> {
        let mut request = Request::new(message);
        let md = request.metadata_mut();
        if let Some(value) = &self.authorization {
            md.insert(AUTHORIZATION_METADATA, value.clone());
        }
        if let Some(value) = &self.actor {
            md.insert(ACTOR_METADATA, value.clone());
        }
        if unary {
            request.set_timeout(self.options.request_timeout);
        }
        request
    }

    /// Maps the outcome of a unary call.
    fn reply<T>(&self, result: Result<tonic::Response<T>, Status>) -> Result<T, Error> {
        result
            .map(tonic::Response::into_inner)
            .map_err(|s| Error::from_status(&self.endpoint, &s, Some(self.options.request_timeout)))
    }

    /// Maps the outcome of a call that opens a server stream.
    fn stream<T>(
        &self,
        result: Result<tonic::Response<Streaming<T>>, Status>,
    ) -> Result<Replies<T>, Error> {
        result
            .map(|r| Replies {
                endpoint: self.endpoint.clone(),
                inner: r.into_inner(),
            })
            .map_err(|s| Error::from_status(&self.endpoint, &s, None))
    }

    /// Whether `addr` (`host:port`) is the node this client already talks to.
    fn is_addr(&self, addr: &str) -> bool {
        self.endpoint
            .split_once("://")
            .map_or(self.endpoint.as_str(), |(_, rest)| rest)
            .trim_end_matches('/')
            == addr
    }

    /// A client for the leader named by `hint`, with this client's scheme and options.
    async fn for_leader(&self, hint: &LeaderHint) -> Result<Client, Error> {
        let scheme = self.endpoint.split_once("://").map_or("http", |(s, _)| s);
        Client::connect(&format!("{scheme}://{}", hint.addr), self.options.clone()).await
    }

    /// Runs a cluster-wide change; when the node answers that another node leads, runs it once
    /// more on that leader. When the leader cannot be reached either, the node's answer (which
    /// names the leader) is the error.
    async fn write<T>(&self, call: impl AsyncFn(&Client) -> Result<T, Error>) -> Result<T, Error> {
        match call(self).await {
            Err(
                not_leader @ Error::NotLeader {
                    leader: Some(_), ..
                },
            ) => {
                let Some(hint) = not_leader.leader().filter(|h| !self.is_addr(&h.addr)) else {
                    return Err(not_leader);
                };
                match self.for_leader(hint).await {
                    Ok(leader) => call(&leader).await,
                    Err(_) => Err(not_leader),
                }
            }
            other => other,
        }
    }

    /// This node at a glance.
    pub async fn status(&self) -> Result<StatusReply, Error> {
        let request = self.request(StatusRequest {}, true);
        self.reply(self.control().status(request).await)
    }

    /// One snapshot of this node's counters.
    pub async fn stats(&self) -> Result<StatsSnapshot, Error> {
        let request = self.request(StatsRequest {}, true);
        self.reply(self.control().get_stats(request).await)
    }

    /// A snapshot every `interval` until the stream is dropped.
    pub async fn watch_stats(&self, interval: Duration) -> Result<Replies<StatsSnapshot>, Error> {
        let interval_ms = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX);
        let request = self.request(WatchStatsRequest { interval_ms }, false);
        self.stream(self.control().watch_stats(request).await)
    }

    /// What the cache holds for `name` and `rtype` (empty: A).
    pub async fn cache_lookup(&self, name: &str, rtype: &str) -> Result<CacheLookupReply, Error> {
        let request = self.request(
            CacheLookupRequest {
                name: name.to_owned(),
                rtype: rtype.to_owned(),
            },
            true,
        );
        self.reply(self.control().cache_lookup(request).await)
    }

    /// Removes entries from this node's cache or, with `flush.cluster`, from every node.
    pub async fn cache_flush(&self, flush: CacheFlushRequest) -> Result<CacheFlushReply, Error> {
        let call = async |client: &Client| {
            let request = client.request(flush.clone(), true);
            client.reply(client.control().cache_flush(request).await)
        };
        if flush.cluster {
            self.write(call).await
        } else {
            call(self).await
        }
    }

    /// Every live entry of this node's cache.
    pub async fn cache_dump(&self) -> Result<Replies<CacheEntry>, Error> {
        let request = self.request(CacheDumpRequest {}, false);
        self.stream(self.control().cache_dump(request).await)
    }

    /// Inserts `entries` into this node's cache; dropping the future cancels the load.
    pub async fn cache_load<S>(&self, entries: S) -> Result<CacheLoadReply, Error>
    where
        S: Stream<Item = CacheEntry> + Send + 'static,
    {
        let request = self.request(entries, false);
        self.control()
            .cache_load(request)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| Error::from_status(&self.endpoint, &s, None))
    }

    /// The configuration, whole (`key` empty) or one dotted key; `local` reads this node's
    /// applied state instead of a linearizable read.
    pub async fn config_get(&self, key: &str, local: bool) -> Result<ConfigGetReply, Error> {
        let request = self.request(
            ConfigGetRequest {
                key: key.to_owned(),
                local,
            },
            true,
        );
        self.reply(self.control().config_get(request).await)
    }

    /// Sets one dotted key, only if the version is still `expect_version` when given.
    pub async fn config_set(
        &self,
        key: &str,
        value: &str,
        expect_version: Option<u64>,
    ) -> Result<ConfigChangeReply, Error> {
        let message = ConfigSetRequest {
            key: key.to_owned(),
            value: value.to_owned(),
            expect_version,
        };
        self.write(async |client: &Client| {
            let request = client.request(message.clone(), true);
            client.reply(client.control().config_set(request).await)
        })
        .await
    }

    /// The newest `limit` versions (0: all that are kept), oldest first.
    pub async fn config_history(&self, limit: u32) -> Result<ConfigHistoryReply, Error> {
        let request = self.request(ConfigHistoryRequest { limit }, true);
        self.reply(self.control().config_history(request).await)
    }

    /// Makes the settings of `version` current again, as a new version.
    pub async fn config_rollback(
        &self,
        version: u64,
        expect_version: Option<u64>,
    ) -> Result<ConfigChangeReply, Error> {
        let message = ConfigRollbackRequest {
            version,
            expect_version,
        };
        self.write(async |client: &Client| {
            let request = client.request(message, true);
            client.reply(client.control().config_rollback(request).await)
        })
        .await
    }

    /// The upstreams with their health and RTT as this node sees them.
    pub async fn upstream_list(&self) -> Result<UpstreamListReply, Error> {
        let request = self.request(UpstreamListRequest {}, true);
        self.reply(self.control().upstream_list(request).await)
    }

    /// Adds an upstream (`host:port` or `host`) to the cluster configuration.
    pub async fn upstream_add(
        &self,
        addr: &str,
        expect_version: Option<u64>,
    ) -> Result<ConfigChangeReply, Error> {
        self.upstream_edit(addr, expect_version, false).await
    }

    /// Removes an upstream from the cluster configuration.
    pub async fn upstream_remove(
        &self,
        addr: &str,
        expect_version: Option<u64>,
    ) -> Result<ConfigChangeReply, Error> {
        self.upstream_edit(addr, expect_version, true).await
    }

    /// Adds or (`remove`) removes an upstream.
    async fn upstream_edit(
        &self,
        addr: &str,
        expect_version: Option<u64>,
        remove: bool,
    ) -> Result<ConfigChangeReply, Error> {
        let message = UpstreamChangeRequest {
            addr: addr.to_owned(),
            expect_version,
        };
        self.write(async |client: &Client| {
            let request = client.request(message.clone(), true);
            let mut control = client.control();
            let result = if remove {
                control.upstream_remove(request).await
            } else {
                control.upstream_add(request).await
            };
            client.reply(result)
        })
        .await
    }

    /// Every member with its role, term, last applied index and reachability.
    pub async fn cluster_members(&self) -> Result<ClusterMembersReply, Error> {
        let request = self.request(ClusterMembersRequest {}, true);
        self.reply(self.control().cluster_members(request).await)
    }

    /// The leader as this node knows it.
    pub async fn cluster_leader(&self) -> Result<ClusterLeaderReply, Error> {
        let request = self.request(ClusterLeaderRequest {}, true);
        self.reply(self.control().cluster_leader(request).await)
    }

    /// Adds node `id`, started with `--join` and serving gRPC at `grpc_addr`: learner first,
    /// then voter once caught up.
    pub async fn cluster_add_node(
        &self,
        id: u64,
        grpc_addr: &str,
    ) -> Result<ClusterMembersReply, Error> {
        let message = ClusterAddNodeRequest {
            id,
            grpc_addr: grpc_addr.to_owned(),
        };
        self.write(async |client: &Client| {
            let request = client.request(message.clone(), true);
            client.reply(client.control().cluster_add_node(request).await)
        })
        .await
    }

    /// Demotes node `id` and removes it from the cluster.
    pub async fn cluster_remove_node(&self, id: u64) -> Result<ClusterMembersReply, Error> {
        self.write(async |client: &Client| {
            let request = client.request(ClusterRemoveNodeRequest { id }, true);
            client.reply(client.control().cluster_remove_node(request).await)
        })
        .await
    }

    /// The `limit` most queried names (0: the node's default) over the node's window.
    pub async fn top_names(&self, limit: u32) -> Result<TopNamesReply, Error> {
        let request = self.request(TopNamesRequest { limit }, true);
        self.reply(self.control().top_names(request).await)
    }

    /// The `grpc.health.v1` status of `service` ("" for the node as a whole).
    pub async fn health(&self, service: &str) -> Result<ServingStatus, Error> {
        let request = self.request(
            HealthCheckRequest {
                service: service.to_owned(),
            },
            true,
        );
        let reply = self.reply(HealthClient::new(self.channel.clone()).check(request).await)?;
        Ok(ServingStatus::try_from(reply.status).unwrap_or(ServingStatus::Unknown))
    }
}

/// `value` as an ASCII metadata value, or the error naming `what`.
fn metadata(
    endpoint: &str,
    what: &'static str,
    value: &str,
) -> Result<MetadataValue<Ascii>, Error> {
    value.parse().map_err(|_| Error::InvalidMetadata {
        endpoint: endpoint.to_owned(),
        what,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bare `host:port` gets `http://`; a URI with a scheme is kept.
    #[test]
    fn endpoints_get_a_scheme() {
        assert_eq!(
            normalize_endpoint("127.0.0.1:50051"),
            "http://127.0.0.1:50051"
        );
        assert_eq!(
            normalize_endpoint(" https://node-1:50051 "),
            "https://node-1:50051"
        );
    }

    /// Connecting to a closed loopback port fails fast as unreachable, naming the endpoint.
    #[tokio::test]
    async fn closed_port_is_unreachable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a port");
        let addr = listener.local_addr().expect("reading the bound address");
        drop(listener);
        let err = Client::connect(&addr.to_string(), ClientOptions::default())
            .await
            .expect_err("nothing listens on the port");
        assert!(err.is_unreachable(), "{err:?}");
        let line = err.to_string();
        assert!(
            line.starts_with(&format!("http://{addr}: unreachable: ")) && !line.contains('\n'),
            "{line}"
        );
        println!("{line}");
    }

    /// An endpoint that is no URI is refused before any connection attempt.
    #[tokio::test]
    async fn bad_endpoint_is_refused() {
        let err = Client::connect("http://exa mple:1", ClientOptions::default())
            .await
            .expect_err("a space is not allowed in a URI");
        assert!(
            matches!(err, Error::InvalidEndpoint { .. }),
            "{err:?}: {err}"
        );
    }

    /// A token that cannot be metadata is refused, and the line does not show the token.
    #[tokio::test]
    async fn bad_token_is_refused() {
        let options = ClientOptions {
            token: Some("secret\nline".into()),
            ..ClientOptions::default()
        };
        let err = Client::connect("127.0.0.1:1", options)
            .await
            .expect_err("a newline cannot travel as metadata");
        let line = err.to_string();
        assert_eq!(
            line,
            "http://127.0.0.1:1: invalid token: it must be visible ASCII"
        );
    }

    /// A client for `endpoint` that connects on first use (no server needed to build it).
    fn lazy(endpoint: &str) -> Client {
        let endpoint = normalize_endpoint(endpoint);
        let channel = Endpoint::from_shared(endpoint.clone())
            .expect("a valid test endpoint")
            .connect_lazy();
        Client {
            endpoint,
            options: ClientOptions {
                connect_timeout: Duration::from_secs(2),
                ..ClientOptions::default()
            },
            channel,
            authorization: None,
            actor: None,
        }
    }

    /// Runs `write` from a client at 127.0.0.1:1 whose node answers "not the leader, the
    /// leader is `hint`"; returns the outcome and the endpoints the call was made on.
    async fn write_with_hint(hint: &str) -> (Result<(), Error>, Vec<String>) {
        let calls = std::sync::Mutex::new(Vec::new());
        let client = lazy("127.0.0.1:1");
        let result = client
            .write(async |c: &Client| {
                calls
                    .lock()
                    .expect("the test's own lock")
                    .push(c.endpoint().to_owned());
                if c.endpoint() == "http://127.0.0.1:1" {
                    Err(Error::NotLeader {
                        endpoint: c.endpoint().to_owned(),
                        message: "not the leader".into(),
                        leader: LeaderHint::parse(hint),
                    })
                } else {
                    Ok(())
                }
            })
            .await;
        let calls = calls.into_inner().expect("the test's own lock");
        (result, calls)
    }

    /// A change answered "not the leader" is made once more on the leader the node names.
    #[tokio::test]
    async fn write_retries_once_on_the_named_leader() {
        let leader = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding a port");
        let addr = leader.local_addr().expect("reading the bound address");
        let (result, calls) = write_with_hint(&format!("2@{addr}")).await;
        assert!(result.is_ok(), "{result:?}");
        assert_eq!(
            calls,
            ["http://127.0.0.1:1".to_owned(), format!("http://{addr}")]
        );
    }

    /// An unreachable leader, or a hint naming the node itself, leaves the node's answer as the
    /// error, which names the leader.
    #[tokio::test]
    async fn write_keeps_the_answer_when_the_leader_is_no_help() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a port");
        let addr = closed.local_addr().expect("reading the bound address");
        drop(closed);
        for hint in [format!("2@{addr}"), "1@127.0.0.1:1".to_owned()] {
            let (result, calls) = write_with_hint(&hint).await;
            let err = result.expect_err("the leader cannot take it");
            assert!(
                err.leader().is_some() && err.to_string().contains("the leader is node"),
                "{err}"
            );
            assert_eq!(calls, ["http://127.0.0.1:1"], "{hint}");
        }
    }

    /// Debug output never shows the token.
    #[test]
    fn debug_redacts_the_token() {
        let options = ClientOptions {
            token: Some("hunter2".into()),
            ..ClientOptions::default()
        };
        let text = format!("{options:?}");
        assert!(
            !text.contains("hunter2") && text.contains("redacted"),
            "{text}"
        );
    }
}
