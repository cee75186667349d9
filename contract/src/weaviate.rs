//! The Weaviate class the memory mirror writes and the companion service
//! reads.
//!
//! With the Weaviate sink the filter creates [`CLASS`] with [`PROPERTIES`]
//! and writes each event as an object (id = event id) with these
//! properties; with `MEM_BACKEND=weaviate` the service selects and filters
//! on the same names in its GraphQL reads. The properties are the event's
//! fields ([`crate::event::field`], except the id) in camelCase.

pub const CLASS: &str = "MemoryEvent";

/// The properties' names.
pub mod property {
    pub const USER: &str = "user";
    pub const SESSION: &str = "session";
    pub const ROLE: &str = "role";
    pub const KIND: &str = "kind";
    pub const CONTENT: &str = "content";
    pub const MODEL: &str = "model";
    pub const ROUTE: &str = "route";
    pub const REQUEST_ID: &str = "requestId";
    pub const TASK_ID: &str = "taskId";
    pub const STATUS: &str = "status";
    pub const TIMESTAMP: &str = "timestamp";
    pub const LATENCY_MS: &str = "latencyMs";
    pub const TOKENS_IN: &str = "tokensIn";
    pub const TOKENS_OUT: &str = "tokensOut";
    pub const TRUNCATED: &str = "truncated";
    pub const UNREADABLE: &str = "unreadable";
    pub const REQUEST_BYTES: &str = "requestBytes";
    pub const TOOL: &str = "tool";
    pub const IS_ERROR: &str = "isError";
}

/// One property of [`CLASS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Property {
    pub name: &'static str,
    /// Weaviate's data type: `text`, `int`, `date` or `boolean`.
    pub data_type: &'static str,
    /// Indexed as one `field` token, so that an `Equal` filter on `user`
    /// can never match another user who shares a word of the name.
    pub exact: bool,
}

const fn text(name: &'static str, exact: bool) -> Property {
    Property {
        name,
        data_type: "text",
        exact,
    }
}

const fn other(name: &'static str, data_type: &'static str) -> Property {
    Property {
        name,
        data_type,
        exact: false,
    }
}

/// Every property, declared so nothing depends on auto-schema guessing a
/// type from the first object written.
pub const PROPERTIES: [Property; 19] = [
    text(property::USER, true),
    text(property::SESSION, true),
    text(property::ROLE, true),
    text(property::KIND, true),
    text(property::CONTENT, false),
    text(property::MODEL, true),
    text(property::ROUTE, true),
    text(property::REQUEST_ID, true),
    text(property::TASK_ID, true),
    other(property::STATUS, "int"),
    other(property::TIMESTAMP, "date"),
    other(property::LATENCY_MS, "int"),
    other(property::TOKENS_IN, "int"),
    other(property::TOKENS_OUT, "int"),
    other(property::TRUNCATED, "boolean"),
    text(property::UNREADABLE, true),
    other(property::REQUEST_BYTES, "int"),
    text(property::TOOL, true),
    other(property::IS_ERROR, "boolean"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::field;

    fn camel_case(snake: &str) -> String {
        let mut out = String::new();
        let mut upper = false;
        for c in snake.chars() {
            match c {
                '_' => upper = true,
                c if upper => {
                    out.push(c.to_ascii_uppercase());
                    upper = false;
                }
                c => out.push(c),
            }
        }
        out
    }

    #[test]
    fn the_properties_are_the_event_fields_in_camel_case() {
        let mut fields = vec![
            field::USER,
            field::SESSION,
            field::ROLE,
            field::KIND,
            field::CONTENT,
            field::TASK_ID,
            field::TIMESTAMP,
        ];
        fields.extend(field::EXCHANGE);
        let mut want: Vec<String> = fields.into_iter().map(camel_case).collect();
        let mut names: Vec<String> = PROPERTIES.iter().map(|p| p.name.to_string()).collect();
        want.sort_unstable();
        names.sort_unstable();
        assert_eq!(names, want);
    }

    #[test]
    fn only_text_is_exact_and_types_are_weaviates() {
        for p in PROPERTIES {
            assert!(
                ["text", "int", "date", "boolean"].contains(&p.data_type),
                "{p:?}"
            );
            assert!(!p.exact || p.data_type == "text", "{p:?}");
        }
        let exact: Vec<&str> = PROPERTIES
            .iter()
            .filter(|p| p.exact)
            .map(|p| p.name)
            .collect();
        assert_eq!(
            exact,
            [
                "user",
                "session",
                "role",
                "kind",
                "model",
                "route",
                "requestId",
                "taskId",
                "unreadable",
                "tool"
            ]
        );
    }
}
