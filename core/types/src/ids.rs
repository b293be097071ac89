//! Newtype identifiers. Ids that arrive over the network are validated on construction:
//! non-empty, at most 255 bytes, printable, no `/` (they end up in paths) and no whitespace.
//! They are shared (`Arc<str>`): the master and the allocator copy ids into every offer,
//! task and event, and a copy should cost a reference count, not an allocation.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

use crate::error::{Error, Result};

/// Longest id we accept, in bytes.
pub const MAX_ID_LEN: usize = 255;

fn validate(field: &str, s: &str) -> Result<()> {
    if s.is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    if s.len() > MAX_ID_LEN {
        return Err(Error::invalid(
            field,
            format!("longer than {MAX_ID_LEN} bytes ({} bytes)", s.len()),
        ));
    }
    if s == "." || s == ".." {
        return Err(Error::invalid(field, format!("'{s}' is not a valid id")));
    }
    if let Some(c) = s
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || *c == '/' || *c == '\\')
    {
        return Err(Error::invalid(
            field,
            format!("contains the character {c:?}, which ids may not contain"),
        ));
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(Arc<str>);

        impl $name {
            /// Validates and wraps an id that came from outside.
            pub fn new(s: impl Into<String>) -> Result<Self> {
                let s = s.into();
                validate($field, &s)?;
                Ok(Self(Arc::from(s)))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = Error;
            fn try_from(s: String) -> Result<Self> {
                Self::new(s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0.to_string()
            }
        }

        impl std::str::FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                Self::new(s)
            }
        }
    };
}

id_type!(
    /// An agent (Mesos "slave") id, assigned by the master on first registration.
    AgentId, "agent_id"
);
id_type!(
    /// A framework id, assigned by the master on first subscription.
    FrameworkId, "framework_id"
);
id_type!(
    /// An offer id, unique for the life of a master.
    OfferId, "offer_id"
);
id_type!(
    /// A task id, chosen by the framework; unique within the framework.
    TaskId, "task_id"
);
id_type!(
    /// An executor id, chosen by the framework (or derived from the task id).
    ExecutorId, "executor_id"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_ids_naming_the_field() {
        assert_eq!(TaskId::new("").unwrap_err().field(), Some("task_id"));
        assert!(TaskId::new("a/b").is_err());
        assert!(TaskId::new("a b").is_err());
        assert!(TaskId::new("..").is_err());
        assert!(TaskId::new("x".repeat(256)).is_err());
        assert!(TaskId::new("web-1.2_3").is_ok());
    }

    #[test]
    fn serde_validates() {
        let ok: AgentId = serde_json::from_str("\"a1\"").unwrap();
        assert_eq!(ok.as_str(), "a1");
        assert!(serde_json::from_str::<AgentId>("\"\"").is_err());
    }
}
