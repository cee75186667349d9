//! Envoy stats for the MCP servers' decisions: per server, the requests
//! let through and those refused (`wasmcustom.attach_mcp.{name}.allowed`
//! and `.denied`). Servers are named by their registered names only; no
//! caller ever appears in a stat name.

use super::abi;
use crate::mcp::config::Mcp;

pub struct McpCounters {
    /// Per server: the allowed and denied counters' ids, when the host
    /// defined them.
    ids: Vec<Option<(u32, u32)>>,
}

impl McpCounters {
    pub fn define(mcp: Option<&Mcp>) -> Self {
        let servers = mcp.map_or(&[][..], |m| &m.servers);
        let counter =
            |name: &str, what: &str| abi::define_counter(&format!("attach_mcp.{name}.{what}")).ok();
        McpCounters {
            ids: servers
                .iter()
                .map(|s| Some((counter(&s.name, "allowed")?, counter(&s.name, "denied")?)))
                .collect(),
        }
    }

    pub fn allowed(&self, server: usize) {
        if let Some(Some((id, _))) = self.ids.get(server) {
            add(*id);
        }
    }

    pub fn denied(&self, server: usize) {
        if let Some(Some((_, id))) = self.ids.get(server) {
            add(*id);
        }
    }
}

/// A count the host refuses is lost: counters are for watching.
fn add(metric: u32) {
    let _ = abi::increment_metric(metric, 1);
}
