//! Renders the Envoy bootstrap (v3 API) for one local gateway.

use crate::a2a;
use crate::dev::{self, DevPlan};
use crate::env::Settings;
use crate::mcp;
use crate::plugin::{ENGINE_CLUSTER, Plugin};
use attach_contract::mcp as mcp_paths;
use attach_filter::url::Url;
use serde_json::{Value, json};
use std::net::IpAddr;
use std::path::Path;

const WASM_FILTER: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
const STRING_VALUE: &str = "type.googleapis.com/google.protobuf.StringValue";
const HCM: &str = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
const ROUTER: &str = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";
const DOWNSTREAM_CONNECTIONS: &str = "type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig";
/// Envoy warns at start-up when nothing caps downstream connections.
const MAX_DOWNSTREAM_CONNECTIONS: u64 = 50_000;
const UPSTREAM_TLS: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext";

/// Everything the bootstrap is made from.
pub struct Input<'a> {
    pub settings: &'a Settings,
    pub plugin: &'a Plugin,
    /// Absolute path of the filter module.
    pub wasm: &'a Path,
    /// Envoy's admin interface, a Unix socket only the operator can open.
    pub admin_socket: &'a Path,
    /// The A2A service's port on 127.0.0.1, when it runs.
    pub a2a_port: Option<u16>,
    /// The local demo's page and token responder (`ATTACH_DEV=on`).
    pub dev: Option<&'a DevPlan>,
}

/// The admin socket: the operator's only (read and write for the owner).
const ADMIN_SOCKET_MODE: u32 = 0o600;

/// The demo page is served by Envoy itself, from the file.
const MAX_PAGE_BYTES: u64 = 1024 * 1024;

/// One route of the gateway's single virtual host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub prefix: String,
    pub cluster: String,
}

/// How long a request to the A2A service may go without a byte: a blocking
/// send waits this long for its agent. No overall route timeout, since an
/// A2A stream lasts as long as its task; the service keeps a quiet stream
/// alive with a comment every 15 s.
const A2A_IDLE_TIMEOUT: &str = "120s";

/// The routes in match order: Envoy takes the first match, so routes to
/// companion services go before the engine's catch-all `/`, which stays last.
pub fn routes(a2a: bool) -> Vec<Route> {
    let mut routes = Vec::new();
    if a2a {
        routes.extend(a2a::ROUTE_PREFIXES.iter().map(|p| Route {
            prefix: p.to_string(),
            cluster: a2a::CLUSTER.to_string(),
        }));
    }
    routes.push(Route {
        prefix: "/".to_string(),
        cluster: ENGINE_CLUSTER.to_string(),
    });
    routes
}

pub fn render(input: &Input) -> Value {
    let s = input.settings;
    let mut clusters = vec![engine_cluster(&s.engine, &s.ca_bundle)];
    clusters.extend(
        input
            .plugin
            .callouts
            .iter()
            // The service's cluster is rendered below with its real port.
            .filter(|c| input.a2a_port.is_none() || c.cluster != crate::a2a::CLUSTER)
            .map(|c| callout_cluster(&c.cluster, &c.origin, &s.ca_bundle)),
    );
    clusters.extend(
        input
            .plugin
            .mcp
            .iter()
            .map(|m| upstream_cluster(&m.cluster(), &m.url, "5s", &s.ca_bundle)),
    );
    if let Some(port) = input.a2a_port {
        clusters.push(a2a_cluster(port));
    }
    if let Some(d) = input.dev {
        clusters.push(loopback_cluster(dev::TOKEN_CLUSTER, d.token_port));
    }
    json!({
        "node": {"id": format!("attach-{}", s.port), "cluster": "attach"},
        "admin": {"address": {"pipe": {
            "path": input.admin_socket.to_string_lossy(),
            "mode": ADMIN_SOCKET_MODE,
        }}},
        "static_resources": {
            "listeners": [listener(input)],
            "clusters": clusters,
        },
        "overload_manager": {
            "resource_monitors": [{
                "name": "envoy.resource_monitors.global_downstream_max_connections",
                "typed_config": {
                    "@type": DOWNSTREAM_CONNECTIONS,
                    "max_active_downstream_connections": MAX_DOWNSTREAM_CONNECTIONS,
                },
            }],
        },
    })
}

/// Whether any cluster of the bootstrap needs the CA bundle.
pub fn needs_ca_bundle(settings: &Settings, plugin: &Plugin) -> bool {
    settings.engine.https
        || plugin.callouts.iter().any(|c| c.origin.https)
        || plugin.mcp.iter().any(|m| m.url.https)
}

fn socket_address(address: &str, port: u16) -> Value {
    json!({"socket_address": {"address": address, "port_value": port}})
}

fn listener(input: &Input) -> Value {
    let s = input.settings;
    json!({
        "name": "attach",
        "address": socket_address(&s.bind.to_string(), s.port),
        "filter_chains": [{
            "filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": http_connection_manager(input),
            }],
        }],
    })
}

fn http_connection_manager(input: &Input) -> Value {
    let engine = &input.settings.engine;
    let mut table: Vec<Value> = input.dev.map(dev_routes).unwrap_or_default();
    table.extend(mcp_routes(&input.plugin.mcp));
    if input.a2a_port.is_some() {
        table.extend(usage_routes());
    }
    table.extend(routes(input.a2a_port.is_some()).into_iter().map(|r| {
        let mut route = json!({
            "cluster": r.cluster,
            // Model replies stream for minutes: no overall deadline.
            "timeout": "0s",
        });
        if r.cluster == a2a::CLUSTER {
            route["idle_timeout"] = json!(A2A_IDLE_TIMEOUT);
        }
        if r.cluster == ENGINE_CLUSTER {
            // Engines such as Ollama refuse Host names they do not know;
            // the original one travels in X-Forwarded-Host.
            route["host_rewrite_literal"] = json!(engine.authority());
            route["append_x_forwarded_host"] = json!(true);
        }
        json!({"match": {"prefix": r.prefix}, "route": route})
    }));
    json!({
        "@type": HCM,
        "stat_prefix": "attach",
        "codec_type": "AUTO",
        // Every request gets an x-request-id (a UUID) when it has none.
        "generate_request_id": true,
        // The filter decides on the path the upstream will see: dot segments
        // (also as %2e), doubled slashes and escaped slashes are resolved
        // first, so `/public/..%2Fprivate` cannot pass as a public path.
        "normalize_path": true,
        "merge_slashes": true,
        "path_with_escaped_slashes_action": "UNESCAPE_AND_FORWARD",
        // CGI- and WSGI-style servers read `x_attach_user` as X-Attach-User:
        // a request with an underscore in a header name gets a 400 (Envoy's
        // advice for edge proxies) rather than reaching any upstream, and
        // the caller learns why instead of losing a header silently.
        "common_http_protocol_options": {"headers_with_underscores_action": "REJECT_REQUEST"},
        "route_config": {
            "name": "attach",
            "virtual_hosts": [{"name": "attach", "domains": ["*"], "routes": table}],
            "max_direct_response_body_size_bytes": MAX_PAGE_BYTES,
        },
        "http_filters": [
            wasm_filter(input.wasm, input.plugin),
            {"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}},
        ],
    })
}

/// The filter, with the variables that hold its secrets passed from
/// Envoy's environment to the VM: the configuration names them, and only
/// their names appear in what the admin interface prints.
fn wasm_filter(wasm: &Path, plugin: &Plugin) -> Value {
    let mut vm_config = json!({
        "vm_id": "attach",
        "runtime": "envoy.wasm.runtime.v8",
        "code": {"local": {"filename": wasm.to_string_lossy()}},
    });
    if !plugin.secrets.is_empty() {
        let keys: Vec<&String> = plugin.secrets.keys().collect();
        vm_config["environment_variables"] = json!({"host_env_keys": keys});
    }
    json!({
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": WASM_FILTER,
            "config": {
                "name": "attach",
                "root_id": "attach",
                // A filter that cannot start, or whose VM fails, must not let
                // requests through unchecked (`fail_open` is deprecated in 1.40).
                "failure_policy": "FAIL_CLOSED",
                // A paused request's body still reaches the filter, never the
                // upstream: the token endpoint reads its form body this way.
                "allow_on_headers_stop_iteration": true,
                "vm_config": vm_config,
                "configuration": {"@type": STRING_VALUE, "value": plugin.json},
            },
        },
    })
}

/// The host as Envoy wants it in a socket address (no IPv6 brackets).
fn bare_host(url: &Url) -> &str {
    url.host.trim_start_matches('[').trim_end_matches(']')
}

fn upstream_cluster(name: &str, url: &Url, connect_timeout: &str, ca_bundle: &Path) -> Value {
    let host = bare_host(url);
    let ip = host.parse::<IpAddr>().is_ok();
    let mut cluster = json!({
        "name": name,
        "type": if ip { "STATIC" } else { "LOGICAL_DNS" },
        "connect_timeout": connect_timeout,
        // Prefer IPv4 so that `localhost` reaches servers bound to 127.0.0.1.
        "dns_lookup_family": "V4_PREFERRED",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": socket_address(host, url.port)}}]}],
        },
    });
    if url.https {
        cluster["transport_socket"] = tls_socket(host, ip, ca_bundle);
    }
    cluster
}

fn engine_cluster(engine: &Url, ca_bundle: &Path) -> Value {
    upstream_cluster(ENGINE_CLUSTER, engine, "5s", ca_bundle)
}

/// The A2A service, on loopback only: Envoy (and so the filter) is its one way in.
fn a2a_cluster(port: u16) -> Value {
    loopback_cluster(a2a::CLUSTER, port)
}

fn loopback_cluster(name: &str, port: u16) -> Value {
    json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "2s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": socket_address("127.0.0.1", port)}}]}],
        },
    })
}

/// The service's usage API, `/usage` and `/usage/...`, through the filter
/// like `/mem/`; but never `/usage/sync`, which only the filter calls (on
/// the service's cluster, not through the listener): a 404 here.
fn usage_routes() -> Vec<Value> {
    let path = attach_contract::usage::USAGE_PATH;
    let route = json!({
        "cluster": a2a::CLUSTER,
        "timeout": "0s",
        "idle_timeout": A2A_IDLE_TIMEOUT,
    });
    vec![
        json!({"match": {"prefix": attach_contract::usage::SYNC_PATH}, "direct_response": {"status": 404}}),
        json!({"match": {"path": path}, "route": route}),
        json!({"match": {"prefix": format!("{path}/")}, "route": route}),
    ]
}

/// Each MCP server's two routes, `/mcp/{name}` (exact, the query apart)
/// and `/mcp/{name}/...`, straight to its cluster with the path rewritten
/// to the server's own; then a 404 for the rest of `/mcp/` and of the
/// servers' metadata paths, which the filter answers itself for every
/// registered server: neither reaches the engine behind `/`.
fn mcp_routes(servers: &[mcp::Server]) -> Vec<Value> {
    if servers.is_empty() {
        return Vec::new();
    }
    let mut table = Vec::new();
    for server in servers {
        let path = mcp_paths::route(server.name());
        table.push(json!({
            "match": {"path": path},
            "route": mcp_route(server, server.path()),
        }));
        table.push(json!({
            "match": {"prefix": format!("{path}/")},
            "route": mcp_route(server, &server.folder()),
        }));
    }
    let metadata = format!("{}{}", mcp_paths::METADATA_PATH, mcp_paths::ROUTE_PREFIX);
    for prefix in [mcp_paths::ROUTE_PREFIX, &metadata] {
        table.push(json!({"match": {"prefix": prefix}, "direct_response": {"status": 404}}));
    }
    table
}

/// An MCP route: the matched path (or prefix) becomes `rewrite`, the query
/// stays. No overall deadline and no idle timeout, not even Envoy's
/// default 5 minutes between bytes: a server streams an answer as events
/// for as long as the call runs, and its event stream for a session may be
/// silent until it has something to say. The server sees its own host
/// (servers that guard against DNS rebinding check it); the original one
/// travels in X-Forwarded-Host.
fn mcp_route(server: &mcp::Server, rewrite: &str) -> Value {
    json!({
        "cluster": server.cluster(),
        "prefix_rewrite": rewrite,
        "timeout": "0s",
        "idle_timeout": "0s",
        "host_rewrite_literal": server.url.authority(),
        "append_x_forwarded_host": true,
    })
}

/// `/demo` (the page, from its file) and `/dev/token` (the launcher's
/// token responder), exact paths ahead of every prefix route.
fn dev_routes(d: &DevPlan) -> Vec<Value> {
    vec![
        json!({
            "match": {"path": dev::DEMO_PATH},
            "direct_response": {"status": 200, "body": {"filename": d.page.to_string_lossy()}},
            "response_headers_to_add": [
                {"header": {"key": "content-type", "value": "text/html; charset=utf-8"}},
                {"header": {"key": "cache-control", "value": "no-store"}},
            ],
        }),
        json!({
            "match": {"path": dev::TOKEN_PATH},
            "route": {"cluster": dev::TOKEN_CLUSTER, "timeout": "5s"},
        }),
    ]
}

fn callout_cluster(name: &str, origin: &Url, ca_bundle: &Path) -> Value {
    upstream_cluster(name, origin, "2s", ca_bundle)
}

/// TLS that really verifies the peer: the system CAs and the host as SAN.
fn tls_socket(host: &str, ip: bool, ca_bundle: &Path) -> Value {
    let san_type = if ip { "IP_ADDRESS" } else { "DNS" };
    let mut context = json!({
        "@type": UPSTREAM_TLS,
        "common_tls_context": {
            "validation_context": {
                "trusted_ca": {"filename": ca_bundle.to_string_lossy()},
                "match_typed_subject_alt_names": [{"san_type": san_type, "matcher": {"exact": host}}],
            },
        },
    });
    // SNI carries host names only, never IP addresses (RFC 6066).
    if !ip {
        context["sni"] = json!(host);
    }
    json!({"name": "envoy.transport_sockets.tls", "typed_config": context})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::tests::settings;
    use crate::plugin::build;

    fn render_with(pairs: &[(&str, &str)]) -> Value {
        render_with_a2a(pairs, None)
    }

    /// The bootstrap for `pairs`, with the companion service on `a2a_port`.
    fn render_with_a2a(pairs: &[(&str, &str)], a2a_port: Option<u16>) -> Value {
        let s = settings(pairs).unwrap();
        let p = build(&s, None).unwrap();
        render(&Input {
            settings: &s,
            plugin: &p,
            wasm: Path::new("/opt/attach/attach_filter.wasm"),
            admin_socket: Path::new("/srv/attach/.attach/run-8080/envoy-admin.sock"),
            a2a_port,
            dev: None,
        })
    }

    fn cluster<'a>(b: &'a Value, name: &str) -> &'a Value {
        b["static_resources"]["clusters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no cluster {name}"))
    }

    fn hcm(b: &Value) -> &Value {
        &b["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    }

    #[test]
    fn listener_admin_and_routes() {
        let b = render_with(&[]);
        assert_eq!(
            b["admin"]["address"],
            json!({"pipe": {"path": "/srv/attach/.attach/run-8080/envoy-admin.sock", "mode": 0o600}})
        );
        let l = &b["static_resources"]["listeners"][0];
        assert_eq!(
            l["address"]["socket_address"],
            json!({"address": "127.0.0.1", "port_value": 8080})
        );
        let h = hcm(&b);
        assert_eq!(h["stat_prefix"], "attach");
        assert_eq!(h["generate_request_id"], true);
        assert_eq!(h["normalize_path"], true);
        assert_eq!(h["merge_slashes"], true);
        assert_eq!(
            h["path_with_escaped_slashes_action"],
            "UNESCAPE_AND_FORWARD"
        );
        assert_eq!(
            h["common_http_protocol_options"]["headers_with_underscores_action"],
            "REJECT_REQUEST"
        );
        let routes = &h["route_config"]["virtual_hosts"][0]["routes"];
        let last = routes.as_array().unwrap().last().unwrap();
        assert_eq!(last["match"]["prefix"], "/");
        assert_eq!(last["route"]["cluster"], "engine");
        assert_eq!(last["route"]["timeout"], "0s");
        assert_eq!(last["route"]["host_rewrite_literal"], "127.0.0.1:11434");
        let filters = h["http_filters"].as_array().unwrap();
        assert_eq!(filters[0]["name"], "envoy.filters.http.wasm");
        assert_eq!(filters.last().unwrap()["name"], "envoy.filters.http.router");
    }

    #[test]
    fn wasm_filter_shape() {
        let b = render_with(&[]);
        let c = &hcm(&b)["http_filters"][0]["typed_config"];
        assert_eq!(c["@type"], WASM_FILTER);
        let c = &c["config"];
        assert_eq!(c["root_id"], "attach");
        assert_eq!(c["allow_on_headers_stop_iteration"], true);
        assert_eq!(c["failure_policy"], "FAIL_CLOSED");
        assert!(c.get("fail_open").is_none());
        assert_eq!(c["vm_config"]["runtime"], "envoy.wasm.runtime.v8");
        assert_eq!(
            c["vm_config"]["code"]["local"]["filename"],
            "/opt/attach/attach_filter.wasm"
        );
        assert_eq!(c["configuration"]["@type"], STRING_VALUE);
    }

    #[test]
    fn string_value_round_trips_the_plugin_config() {
        let s = settings(&[
            ("OIDC_ISSUER", "https://idp.example"),
            ("OIDC_AUD", "api,\"quoted\" aud"),
        ])
        .unwrap();
        let p = build(&s, None).unwrap();
        let b = render(&Input {
            settings: &s,
            plugin: &p,
            wasm: Path::new("/w.wasm"),
            admin_socket: Path::new("/a.sock"),
            a2a_port: None,
            dev: None,
        });
        // Through the text Envoy reads, back to the plugin configuration.
        let text = serde_json::to_string(&b).unwrap();
        let back: Value = serde_json::from_str(&text).unwrap();
        let embedded = back["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
            ["typed_config"]["http_filters"][0]["typed_config"]["config"]["configuration"]["value"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(embedded, p.json);
        let parsed: attach_filter::config::PluginConfig = serde_json::from_str(&embedded).unwrap();
        assert_eq!(parsed, p.config);
        let c = attach_filter::config::Config::from_json_with_env(embedded.as_bytes(), &|_| None)
            .unwrap();
        assert_eq!(c.providers[0].audiences, ["api", "\"quoted\" aud"]);
    }

    #[test]
    fn engine_cluster_plain_and_tls() {
        let b = render_with(&[]);
        let e = cluster(&b, "engine");
        assert_eq!(e["type"], "STATIC");
        assert_eq!(e["dns_lookup_family"], "V4_PREFERRED");
        assert!(e.get("transport_socket").is_none());
        let b = render_with(&[("ENGINE_URL", "https://engine.example")]);
        let e = cluster(&b, "engine");
        assert_eq!(e["type"], "LOGICAL_DNS");
        assert_eq!(
            e["transport_socket"]["typed_config"]["sni"],
            "engine.example"
        );
        let ep = &e["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"];
        assert_eq!(
            ep["socket_address"],
            json!({"address": "engine.example", "port_value": 443})
        );
    }

    #[test]
    fn callout_cluster_verifies_tls() {
        let b = render_with(&[
            ("OIDC_ISSUER", "https://idp.example.com"),
            ("OIDC_AUD", "api"),
            ("ATTACH_CA_BUNDLE", "/etc/my-ca.pem"),
        ]);
        let c = cluster(&b, "attach_callout_idp_example_com_443");
        assert_eq!(c["type"], "LOGICAL_DNS");
        assert_eq!(c["connect_timeout"], "2s");
        assert_eq!(c["dns_lookup_family"], "V4_PREFERRED");
        let t = &c["transport_socket"];
        assert_eq!(t["name"], "envoy.transport_sockets.tls");
        let t = &t["typed_config"];
        assert_eq!(t["@type"], UPSTREAM_TLS);
        assert_eq!(t["sni"], "idp.example.com");
        let v = &t["common_tls_context"]["validation_context"];
        assert_eq!(v["trusted_ca"]["filename"], "/etc/my-ca.pem");
        assert_eq!(
            v["match_typed_subject_alt_names"],
            json!([{"san_type": "DNS", "matcher": {"exact": "idp.example.com"}}])
        );
    }

    #[test]
    fn ip_literal_tls_uses_ip_san_and_no_sni() {
        let b = render_with(&[("OIDC_ISSUER", "https://[::1]:8443"), ("OIDC_AUD", "api")]);
        let c = cluster(&b, "attach_callout_1_8443");
        assert_eq!(c["type"], "STATIC");
        let ep = &c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"];
        assert_eq!(ep["socket_address"]["address"], "::1");
        let t = &c["transport_socket"]["typed_config"];
        assert!(t.get("sni").is_none());
        assert_eq!(
            t["common_tls_context"]["validation_context"]["match_typed_subject_alt_names"][0]["san_type"],
            "IP_ADDRESS"
        );
    }

    #[test]
    fn plain_http_callout_has_no_tls() {
        let b = render_with(&[("OIDC_ISSUER", "http://localhost:9000"), ("OIDC_AUD", "a")]);
        let c = cluster(&b, "attach_callout_localhost_9000");
        assert_eq!(c["type"], "LOGICAL_DNS");
        assert!(c.get("transport_socket").is_none());
    }

    #[test]
    fn different_ports_give_different_listeners() {
        let a = render_with(&[("ATTACH_PORT", "18080")]);
        let b = render_with(&[("ATTACH_PORT", "18081")]);
        let port = |b: &Value| {
            b["static_resources"]["listeners"][0]["address"]["socket_address"]["port_value"]
                .as_u64()
                .unwrap()
        };
        assert_eq!((port(&a), port(&b)), (18080, 18081));
        assert_ne!(a["node"]["id"], b["node"]["id"]);
    }

    fn render_with_service(port: u16) -> (Value, Plugin) {
        let s = settings(&[("A2A_AGENTS", "echo=http://127.0.0.1:9000")]).unwrap();
        let names = a2a::agent_names(&s.a2a).unwrap();
        let service = crate::plugin::Service {
            assertion_key: "A".repeat(43),
            public_paths: a2a::card_paths(&names),
            agent_dids: Vec::new(),
        };
        let p = crate::plugin::build_with(&s, None, Some(&service), None).unwrap();
        let b = render(&Input {
            settings: &s,
            plugin: &p,
            wasm: Path::new("/w.wasm"),
            admin_socket: Path::new("/srv/attach/.attach/run-8080/envoy-admin.sock"),
            a2a_port: Some(port),
            dev: None,
        });
        (b, p)
    }

    #[test]
    fn route_order_puts_the_service_before_the_engine() {
        let prefixes = |a2a: bool| -> Vec<(String, String)> {
            routes(a2a)
                .into_iter()
                .map(|r| (r.prefix, r.cluster))
                .collect()
        };
        assert_eq!(prefixes(false), [("/".to_string(), "engine".to_string())]);
        let with = prefixes(true);
        assert_eq!(
            with,
            [
                ("/a2a/".to_string(), "a2a_service".to_string()),
                ("/mem/".to_string(), "a2a_service".to_string()),
                ("/".to_string(), "engine".to_string()),
            ]
        );
    }

    #[test]
    fn service_routes_and_cluster() {
        let (b, _) = render_with_service(18090);
        let routes = hcm(&b)["route_config"]["virtual_hosts"][0]["routes"]
            .as_array()
            .unwrap()
            .clone();
        // The usage API goes to the service, its sync route nowhere.
        assert_eq!(routes[0]["match"]["prefix"], "/usage/sync");
        assert_eq!(routes[0]["direct_response"], json!({"status": 404}));
        assert_eq!(routes[1]["match"]["path"], "/usage");
        assert_eq!(routes[2]["match"]["prefix"], "/usage/");
        for usage in &routes[1..3] {
            assert_eq!(usage["route"]["cluster"], "a2a_service");
        }
        let routes = routes[3..].to_vec();
        assert_eq!(routes.len(), 3);
        for (i, prefix) in ["/a2a/", "/mem/"].iter().enumerate() {
            assert_eq!(routes[i]["match"]["prefix"], *prefix);
            assert_eq!(routes[i]["route"]["cluster"], "a2a_service");
            assert_eq!(routes[i]["route"]["timeout"], "0s");
            assert_eq!(routes[i]["route"]["idle_timeout"], "120s");
            assert!(routes[i]["route"].get("host_rewrite_literal").is_none());
        }
        assert_eq!(routes[2]["match"]["prefix"], "/");
        assert_eq!(routes[2]["route"]["cluster"], "engine");
        let c = cluster(&b, "a2a_service");
        assert_eq!(c["type"], "STATIC");
        assert!(c.get("transport_socket").is_none());
        assert_eq!(
            c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"],
            json!({"address": "127.0.0.1", "port_value": 18090})
        );
        // Without the service: no route, no cluster.
        let b = render_with(&[]);
        let clusters = b["static_resources"]["clusters"].as_array().unwrap();
        assert!(clusters.iter().all(|c| c["name"] != "a2a_service"));
    }

    fn routes_of(b: &Value) -> Vec<Value> {
        hcm(b)["route_config"]["virtual_hosts"][0]["routes"]
            .as_array()
            .unwrap()
            .clone()
    }

    #[test]
    fn mcp_servers_get_a_cluster_and_routes_that_rewrite_to_their_path() {
        let b = render_with(&[(
            "MCP_SERVERS",
            "tools=http://127.0.0.1:9000/mcp,files=https://files.example/rpc/;scopes=files:read,root=http://localhost:9002",
        )]);
        let routes = routes_of(&b);
        let route = |i: usize| (&routes[i]["match"], &routes[i]["route"]);
        let expected = [
            ("path", "/mcp/tools", "mcp_tools", "/mcp", "127.0.0.1:9000"),
            (
                "prefix",
                "/mcp/tools/",
                "mcp_tools",
                "/mcp/",
                "127.0.0.1:9000",
            ),
            ("path", "/mcp/files", "mcp_files", "/rpc/", "files.example"),
            (
                "prefix",
                "/mcp/files/",
                "mcp_files",
                "/rpc/",
                "files.example",
            ),
            ("path", "/mcp/root", "mcp_root", "/", "localhost:9002"),
            ("prefix", "/mcp/root/", "mcp_root", "/", "localhost:9002"),
        ];
        for (i, (kind, path, cluster, rewrite, host)) in expected.into_iter().enumerate() {
            let (m, r) = route(i);
            assert_eq!(m, &json!({ kind: path }), "{i}");
            assert_eq!(r["cluster"], cluster, "{i}");
            assert_eq!(r["prefix_rewrite"], rewrite, "{i}");
            assert_eq!(r["host_rewrite_literal"], host, "{i}");
            assert_eq!(r["append_x_forwarded_host"], true);
            // Streams last as long as the server sends (MCP 2026-07-28
            // basic/transports/streamable-http: SSE responses and streams).
            assert_eq!(r["timeout"], "0s");
            assert_eq!(r["idle_timeout"], "0s");
        }
        // The rest of /mcp/ and of the metadata paths goes nowhere.
        for (i, prefix) in [
            (6, "/mcp/"),
            (7, "/.well-known/oauth-protected-resource/mcp/"),
        ] {
            assert_eq!(routes[i]["match"], json!({"prefix": prefix}));
            assert_eq!(routes[i]["direct_response"], json!({"status": 404}));
        }
        assert_eq!(routes.last().unwrap()["match"]["prefix"], "/");
        assert_eq!(routes.len(), 9);

        let tools = cluster(&b, "mcp_tools");
        assert_eq!(tools["type"], "STATIC");
        assert!(tools.get("transport_socket").is_none());
        assert_eq!(
            tools["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"],
            json!({"address": "127.0.0.1", "port_value": 9000})
        );
        let files = cluster(&b, "mcp_files");
        assert_eq!(files["type"], "LOGICAL_DNS");
        assert_eq!(
            files["transport_socket"]["typed_config"]["sni"],
            "files.example"
        );
        assert_eq!(cluster(&b, "mcp_root")["type"], "LOGICAL_DNS");
    }

    #[test]
    fn without_mcp_servers_nothing_is_routed_to_mcp() {
        let b = render_with(&[]);
        let text = serde_json::to_string(&routes_of(&b)).unwrap();
        assert!(!text.contains("/mcp"), "{text}");
        let clusters = b["static_resources"]["clusters"].as_array().unwrap();
        assert!(
            clusters
                .iter()
                .all(|c| { !c["name"].as_str().unwrap().starts_with(mcp::CLUSTER_PREFIX) })
        );
    }

    #[test]
    fn an_https_mcp_server_needs_the_ca_bundle() {
        let s = settings(&[("MCP_SERVERS", "t=https://tools.example/mcp")]).unwrap();
        assert!(needs_ca_bundle(&s, &build(&s, None).unwrap()));
        let s = settings(&[("MCP_SERVERS", "t=http://127.0.0.1:9000/mcp")]).unwrap();
        assert!(!needs_ca_bundle(&s, &build(&s, None).unwrap()));
    }

    #[test]
    fn mcp_routes_come_before_the_services_and_the_engine() {
        let b = render_with_a2a(
            &[
                ("A2A_AGENTS", "echo=http://127.0.0.1:9100"),
                ("MCP_SERVERS", "tools=http://127.0.0.1:9000/mcp"),
            ],
            Some(18090),
        );
        let matched: Vec<String> = routes_of(&b)
            .iter()
            .map(|r| {
                let m = &r["match"];
                m["path"]
                    .as_str()
                    .or(m["prefix"].as_str())
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(
            matched,
            [
                "/mcp/tools",
                "/mcp/tools/",
                "/mcp/",
                "/.well-known/oauth-protected-resource/mcp/",
                "/usage/sync",
                "/usage",
                "/usage/",
                "/a2a/",
                "/mem/",
                "/"
            ]
        );
    }

    #[test]
    fn the_bootstrap_names_the_key_variable_and_never_holds_the_key() {
        let (b, p) = render_with_service(18090);
        let text = serde_json::to_string(&b).unwrap();
        assert!(
            !text.contains(&"A".repeat(43)),
            "the key is in the bootstrap"
        );
        let vm = &hcm(&b)["http_filters"][0]["typed_config"]["config"]["vm_config"];
        assert_eq!(
            vm["environment_variables"],
            json!({"host_env_keys": ["ATTACH_ASSERTION_KEY"]})
        );
        assert_eq!(p.assertion_key(), Some("A".repeat(43).as_str()));
        // Without secrets, no variable is passed.
        let b = render_with(&[]);
        let vm = &hcm(&b)["http_filters"][0]["typed_config"]["config"]["vm_config"];
        assert!(vm.get("environment_variables").is_none());
    }

    #[test]
    fn embedded_plugin_config_names_the_key_variable_and_card_paths() {
        let (b, p) = render_with_service(18090);
        let embedded =
            hcm(&b)["http_filters"][0]["typed_config"]["config"]["configuration"]["value"]
                .as_str()
                .unwrap();
        assert_eq!(embedded, p.json);
        let parsed: Value = serde_json::from_str(embedded).unwrap();
        assert_eq!(parsed["assertion_key"], Value::Null);
        assert_eq!(parsed["assertion_key_env"], "ATTACH_ASSERTION_KEY");
        let public: Vec<&str> = parsed["public_paths"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(public.contains(&"/a2a/agents/echo/.well-known/agent-card.json"));
        assert!(public.contains(&"/a2a/agents/echo/.well-known/agent.json"));
        assert!(
            !public
                .iter()
                .any(|p| p.starts_with("/a2a/") && p.ends_with('*'))
        );
        assert!(!public.contains(&"/a2a/agents/echo"));
    }
}
