//! Numbered-parameter SQL, built from fixed fragments, and the JSON text
//! columns: what the task and memory queries share.

pub type StoreResult<T> = Result<T, sqlx::Error>;

/// Numbered-parameter SQL assembled from fixed fragments.
pub(super) struct Sql {
    pub(super) text: String,
    pub(super) args: Vec<Arg>,
}

pub(super) enum Arg {
    Text(String),
    Int(i64),
}

impl Sql {
    pub(super) fn new(text: &str) -> Self {
        Self {
            text: text.to_string(),
            args: Vec::new(),
        }
    }

    /// Appends `fragment`, where `?` stands for the next parameter.
    pub(super) fn push(&mut self, fragment: &str, arg: Arg) -> &mut Self {
        self.args.push(arg);
        let placeholder = format!("${}", self.args.len());
        self.text.push_str(&fragment.replace('?', &placeholder));
        self
    }

    /// `fragment` with the value, or with `NULL` in place of `?`.
    pub(super) fn push_optional(&mut self, fragment: &str, value: Option<&str>) -> &mut Self {
        match value {
            Some(v) => self.push(fragment, Arg::Text(v.to_string())),
            None => self.raw(&fragment.replace('?', "NULL")),
        }
    }

    pub(super) fn raw(&mut self, fragment: &str) -> &mut Self {
        self.text.push_str(fragment);
        self
    }

    pub(super) fn query(&self) -> sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments<'_>> {
        let mut q = sqlx::query(&self.text);
        for arg in &self.args {
            q = match arg {
                Arg::Text(s) => q.bind(s.as_str()),
                Arg::Int(i) => q.bind(*i),
            };
        }
        q
    }
}

pub(super) fn json_text(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

pub(super) fn decode_json<T: serde::de::DeserializeOwned>(
    column: &str,
    text: &str,
) -> StoreResult<T> {
    serde_json::from_str(text).map_err(|e| sqlx::Error::ColumnDecode {
        index: column.to_string(),
        source: Box::new(e),
    })
}
