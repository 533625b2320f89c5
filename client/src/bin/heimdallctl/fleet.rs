//! The endpoints a command addresses: node-local commands run on each, cluster-wide ones on the
//! first that answers; and how per-node results are printed.

use std::fmt::Display;
use std::fs;
use std::path::Path;

use anyhow::{Context as _, Result, bail};
use heimdall_client::{Client, ClientOptions, Error, TlsOptions};
use serde::Serialize;

use crate::args::{Global, Output};

/// What every command needs: the endpoints, how to connect, how to print.
#[derive(Debug)]
pub struct Fleet {
    /// The endpoints, in the order given.
    pub endpoints: Vec<String>,
    /// Token, actor and timeouts.
    pub options: ClientOptions,
    /// Table or JSON.
    pub output: Output,
}

/// One endpoint's result of a node-local command.
#[derive(Debug)]
pub struct NodeResult<T, E = Error> {
    /// The endpoint.
    pub endpoint: String,
    /// What it answered.
    pub result: Result<T, E>,
}

/// One endpoint's result as JSON: `{"endpoint": ..., "result": ...}` or `{..., "error": ...}`.
#[derive(Debug, Serialize)]
struct NodeJson<'a, T: Serialize> {
    /// The endpoint.
    endpoint: &'a str,
    /// The answer, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'a T>,
    /// The one-line error, when the call failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// The caller's name when `--as` is not given: `$USER@hostname`.
pub fn default_actor() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".to_owned());
    let host = fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_owned());
    format!("{user}@{host}")
}

/// `endpoint` with `https://` in front when it names no scheme and TLS files were given (the
/// client library gives the others `http://`).
fn default_scheme(endpoint: &str, tls: bool) -> String {
    if tls && !endpoint.contains("://") {
        format!("https://{endpoint}")
    } else {
        endpoint.to_owned()
    }
}

/// The token in `path`, surrounding whitespace removed.
fn read_token(path: &Path) -> Result<String> {
    let text = fs::read_to_string(path)
        .with_context(|| format!("reading the token file {}", path.display()))?;
    let token = text.trim();
    if token.is_empty() {
        bail!("the token file {} is empty", path.display());
    }
    Ok(token.to_owned())
}

impl Fleet {
    /// The fleet the global flags describe.
    pub fn from_flags(global: &Global) -> Result<Fleet> {
        let token = match &global.token_file {
            Some(path) => Some(read_token(path)?),
            None => global.token.clone().filter(|t| !t.is_empty()),
        };
        let tls = TlsOptions::from_files(
            global.ca_cert.as_deref(),
            global.client_cert.as_deref(),
            global.client_key.as_deref(),
        )?;
        let tls_given = tls != TlsOptions::default();
        let endpoints: Vec<String> = global
            .endpoint
            .iter()
            .map(|e| e.trim())
            .filter(|e| !e.is_empty())
            .map(|e| default_scheme(e, tls_given))
            .collect();
        if endpoints.is_empty() {
            bail!("no endpoint given");
        }
        Ok(Fleet {
            endpoints,
            options: ClientOptions {
                token,
                actor: Some(global.actor.clone().unwrap_or_else(default_actor)),
                connect_timeout: global.connect_timeout,
                request_timeout: global.timeout,
                tls: Some(tls),
            },
            output: global.output,
        })
    }

    /// Connects to `endpoint` with the fleet's options.
    pub async fn connect(&self, endpoint: &str) -> Result<Client, Error> {
        Client::connect(endpoint, self.options.clone()).await
    }

    /// Runs `call` on every endpoint, one after the other (an unreachable node does not stop
    /// the others).
    pub async fn each<T>(
        &self,
        call: impl AsyncFn(&Client) -> Result<T, Error>,
    ) -> Vec<NodeResult<T>> {
        let mut results = Vec::with_capacity(self.endpoints.len());
        for endpoint in &self.endpoints {
            let result = match self.connect(endpoint).await {
                Ok(client) => call(&client).await,
                Err(e) => Err(e),
            };
            results.push(NodeResult {
                endpoint: heimdall_client::normalize_endpoint(endpoint),
                result,
            });
        }
        results
    }

    /// Runs a cluster-wide `call` on the first endpoint that can be reached.
    pub async fn first<T>(&self, call: impl AsyncFn(&Client) -> Result<T, Error>) -> Result<T> {
        let mut last = None;
        for endpoint in &self.endpoints {
            match self.connect(endpoint).await {
                Ok(client) => return Ok(call(&client).await?),
                Err(e) if e.is_unreachable() => last = Some(e),
                Err(e) => return Err(e.into()),
            }
        }
        Err(last.map_or_else(|| anyhow::anyhow!("no endpoint given"), anyhow::Error::from))
    }

    /// Runs a cluster-wide `call` on the first endpoint that can be reached and prints its
    /// answer with [`Fleet::print_one`].
    pub async fn one<T: Serialize>(
        &self,
        call: impl AsyncFn(&Client) -> Result<T, Error>,
        text: impl FnOnce(&T) -> String,
    ) -> Result<()> {
        let view = self.first(call).await?;
        self.print_one(&view, text)
    }

    /// The single endpoint of a command that reads or writes one node only.
    pub fn single(&self, command: &str) -> Result<&str> {
        match self.endpoints.as_slice() {
            [one] => Ok(one),
            _ => bail!(
                "{command} works on one node; give exactly one --endpoint (got {})",
                self.endpoints.len()
            ),
        }
    }

    /// Prints a cluster-wide answer: `text` for tables, the view for JSON.
    pub fn print_one<T: Serialize>(&self, view: &T, text: impl FnOnce(&T) -> String) -> Result<()> {
        match self.output {
            Output::Table => print!("{}", text(view)),
            Output::Json => println!("{}", serde_json::to_string_pretty(view)?),
        }
        Ok(())
    }

    /// Prints node-local results: for tables, `text` of each answer under a heading per node
    /// when there are several; for JSON, one array. Each failure goes to stderr as one line;
    /// the result is an error when any node failed.
    pub fn print_each<T: Serialize, E: Display>(
        &self,
        results: &[NodeResult<T, E>],
        text: impl Fn(&T) -> String,
    ) -> Result<()> {
        match self.output {
            Output::Table => {
                let several = results.len() > 1;
                for (i, node) in results.iter().enumerate() {
                    if let Ok(value) = &node.result {
                        if several {
                            if i > 0 {
                                println!();
                            }
                            println!("== {} ==", node.endpoint);
                        }
                        print!("{}", text(value));
                    }
                }
            }
            Output::Json => println!("{}", serde_json::to_string_pretty(&json_array(results))?),
        }
        report_failures(results)
    }

    /// Prints node-local results as one table (`table` gets every answer with its endpoint)
    /// or one JSON array; failures as for [`Fleet::print_each`].
    pub fn print_rows<T: Serialize, E: Display>(
        &self,
        results: &[NodeResult<T, E>],
        table: impl FnOnce(&[(&str, &T)]) -> String,
    ) -> Result<()> {
        match self.output {
            Output::Table => {
                let rows: Vec<(&str, &T)> = results
                    .iter()
                    .filter_map(|n| n.result.as_ref().ok().map(|v| (n.endpoint.as_str(), v)))
                    .collect();
                if !rows.is_empty() {
                    print!("{}", table(&rows));
                }
            }
            Output::Json => println!("{}", serde_json::to_string_pretty(&json_array(results))?),
        }
        report_failures(results)
    }
}

/// The JSON form of node-local results.
fn json_array<T: Serialize, E: Display>(results: &[NodeResult<T, E>]) -> Vec<NodeJson<'_, T>> {
    results
        .iter()
        .map(|n| NodeJson {
            endpoint: &n.endpoint,
            result: n.result.as_ref().ok(),
            error: n.result.as_ref().err().map(|e| format!("{e:#}")),
        })
        .collect()
}

/// Prints every failure but the last to stderr and returns the last as the error (main prints
/// it), so each failed node gets exactly one line.
fn report_failures<T, E: Display>(results: &[NodeResult<T, E>]) -> Result<()> {
    let failures: Vec<&E> = results
        .iter()
        .filter_map(|n| n.result.as_ref().err())
        .collect();
    let Some((last, rest)) = failures.split_last() else {
        return Ok(());
    };
    for failure in rest {
        eprintln!("heimdallctl: {failure:#}");
    }
    bail!("{last:#}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The default actor is user@host with both parts filled in.
    #[test]
    fn default_actor_has_user_and_host() {
        let actor = default_actor();
        let (user, host) = actor.split_once('@').expect("user@host");
        assert!(!user.is_empty() && !host.is_empty(), "{actor}");
    }

    /// JSON results carry the endpoint and either the answer or the one-line error.
    #[test]
    fn json_results() {
        let results = vec![
            NodeResult {
                endpoint: "http://a:1".to_owned(),
                result: Ok(5u64),
            },
            NodeResult {
                endpoint: "http://b:2".to_owned(),
                result: Err(Error::Unreachable {
                    endpoint: "http://b:2".to_owned(),
                    reason: "connection refused".to_owned(),
                }),
            },
        ];
        let json = serde_json::to_value(json_array(&results)).expect("serializable");
        assert_eq!(
            json,
            serde_json::json!([
                {"endpoint": "http://a:1", "result": 5},
                {"endpoint": "http://b:2", "error": "http://b:2: unreachable: connection refused"}
            ])
        );
        let err = report_failures(&results).expect_err("one node failed");
        assert_eq!(
            err.to_string(),
            "http://b:2: unreachable: connection refused"
        );
    }

    /// Bare endpoints get https:// when TLS files are given; explicit schemes stay.
    #[test]
    fn tls_endpoints_default_to_https() {
        assert_eq!(default_scheme("n1:50051", true), "https://n1:50051");
        assert_eq!(default_scheme("n1:50051", false), "n1:50051");
        assert_eq!(default_scheme("http://n1:50051", true), "http://n1:50051");
    }

    /// A token file's whitespace is trimmed and an empty file refused.
    #[test]
    fn token_files() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("token");
        fs::write(&path, "  s3cret\n").expect("writing the token");
        assert_eq!(read_token(&path).expect("a token"), "s3cret");
        fs::write(&path, "\n").expect("writing the token");
        let err = read_token(&path).expect_err("empty");
        assert!(err.to_string().contains("is empty"), "{err}");
    }
}
