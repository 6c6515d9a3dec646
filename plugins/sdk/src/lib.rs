//! The guest SDK for wasmgate tool plugins.
//!
//! A tool is a type implementing [`Tool`]: its name, description, JSON Schema,
//! typed arguments and typed output. [`export_tools!`] turns a list of them
//! into the `tool` export of the `task-tool` world, so a plugin crate is a few
//! lines:
//!
//! ```ignore
//! use wasmgate_sdk::{Tool, ToolError};
//!
//! struct Shout;
//!
//! #[derive(serde::Deserialize)]
//! struct Args { text: String }
//!
//! impl Tool for Shout {
//!     const NAME: &'static str = "shout";
//!     const DESCRIPTION: &'static str = "Repeats the text in capitals.";
//!     const INPUT_SCHEMA: &'static str = r#"{"type":"object","properties":{"text":{"type":"string"}},"required":["text"],"additionalProperties":false}"#;
//!     type Args = Args;
//!     type Output = String;
//!     fn call(args: Args) -> Result<String, ToolError> { Ok(args.text.to_uppercase()) }
//! }
//!
//! wasmgate_sdk::export_tools!(Shout);
//! ```
//!
//! The host capabilities are re-exported as [`tasks`], [`kv`], [`config`]
//! and [`log`]; a plugin that calls [`tasks`], [`kv`] or [`config`] must ask
//! for that capability in its manifest (and the operator grant it).
//! [`kv_json`] stores JSON values in [`kv`].

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Generated bindings of the `task-tool` world. Plugins rarely need them
/// directly; [`export_tools!`] refers to them.
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "task-tool",
        path: "../../wit",
        pub_export_macro: true,
        default_bindings_module: "wasmgate_sdk::bindings",
    });
}

pub use bindings::exports::wasmgate::plugin::tool::{ToolError, ToolSpec};
pub use bindings::wasmgate::plugin::{config, kv, log, tasks};
pub use serde_json;

/// One tool of a plugin.
pub trait Tool {
    /// The name the model calls it by: `[a-z][a-z0-9_]*`, unique across the
    /// gateway.
    const NAME: &'static str;
    /// What it does and when to use it, written for the model.
    const DESCRIPTION: &'static str;
    /// JSON Schema of the arguments object, as text.
    const INPUT_SCHEMA: &'static str;
    /// The arguments, deserialised from the JSON object the caller sent.
    type Args: DeserializeOwned;
    /// The result, serialised to JSON for the caller.
    type Output: Serialize;

    fn call(args: Self::Args) -> Result<Self::Output, ToolError>;
}

/// A task error is a tool error the model can explain.
impl From<tasks::TaskError> for ToolError {
    fn from(error: tasks::TaskError) -> Self {
        match error {
            tasks::TaskError::NotFound(id) => ToolError::NotFound(format!("task {id} not found")),
            tasks::TaskError::Invalid(message) => ToolError::InvalidArguments(message),
            tasks::TaskError::Unavailable(message) => ToolError::Failed(message),
        }
    }
}

/// A storage error is a tool error the model can explain.
impl From<kv::KvError> for ToolError {
    fn from(error: kv::KvError) -> Self {
        match error {
            kv::KvError::Invalid(message) => ToolError::InvalidArguments(message),
            kv::KvError::Quota(message) | kv::KvError::Unavailable(message) => {
                ToolError::Failed(message)
            }
        }
    }
}

pub mod http;

/// [`kv`] with JSON values: what a plugin stores for the calling user.
pub mod kv_json {
    use super::{ToolError, kv};
    use serde::Serialize;
    use serde::de::DeserializeOwned;

    /// The value under `key`, if there is one (and it is `T`).
    pub fn get<T: DeserializeOwned>(key: &str) -> Result<Option<T>, ToolError> {
        match kv::get(key)? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|err| ToolError::Failed(format!("stored value {key:?}: {err}"))),
        }
    }

    /// Stores `value` under `key`.
    pub fn set<T: Serialize>(key: &str, value: &T) -> Result<(), ToolError> {
        let bytes = serde_json::to_vec(value).map_err(|err| ToolError::Failed(err.to_string()))?;
        Ok(kv::set(key, &bytes)?)
    }

    /// Deletes `key`; whether it was there.
    pub fn delete(key: &str) -> Result<bool, ToolError> {
        Ok(kv::delete(key)?)
    }

    /// Every key that starts with `prefix`, page by page (each page is a
    /// host call of the call's budget).
    pub fn keys(prefix: &str) -> Result<Vec<String>, ToolError> {
        let mut keys: Vec<String> = Vec::new();
        loop {
            let page = kv::list_keys(prefix, keys.last().map(String::as_str), 100)?;
            let done = page.len() < 100;
            keys.extend(page);
            if done {
                return Ok(keys);
            }
        }
    }
}

/// The [`ToolSpec`] of `T`, as `list-tools` reports it.
pub fn spec<T: Tool>() -> ToolSpec {
    ToolSpec {
        name: T::NAME.to_string(),
        description: T::DESCRIPTION.to_string(),
        input_schema: T::INPUT_SCHEMA.to_string(),
    }
}

/// Parses `arguments`, runs `T` and serialises its output.
pub fn dispatch<T: Tool>(arguments: &str) -> Result<String, ToolError> {
    let args: T::Args = serde_json::from_str(arguments)
        .map_err(|err| ToolError::InvalidArguments(format!("{}: {err}", T::NAME)))?;
    let output = T::call(args)?;
    serde_json::to_string(&output).map_err(|err| ToolError::Failed(err.to_string()))
}

/// Exports the given [`Tool`] types as this component's `tool` interface.
#[macro_export]
macro_rules! export_tools {
    ($($tool:ty),+ $(,)?) => {
        struct WasmgateComponent;

        impl $crate::bindings::exports::wasmgate::plugin::tool::Guest for WasmgateComponent {
            fn list_tools() -> ::std::vec::Vec<$crate::ToolSpec> {
                ::std::vec![$($crate::spec::<$tool>()),+]
            }

            fn call(
                name: ::std::string::String,
                arguments: ::std::string::String,
            ) -> ::std::result::Result<::std::string::String, $crate::ToolError> {
                $(
                    if name == <$tool as $crate::Tool>::NAME {
                        return $crate::dispatch::<$tool>(&arguments);
                    }
                )+
                Err($crate::ToolError::UnknownTool(name))
            }
        }

        $crate::bindings::export!(WasmgateComponent with_types_in $crate::bindings);
    };
}
