//! [`Reply`]: what the hub core answers, before any HTTP library sees it.

use bytes::Bytes;
use serde_json::Value;

use crate::protocol::{HubLinks, JecpError};

/// A finished response: status, extra headers and body bytes. The `http`
/// layer copies it onto a hyper response and adds transport headers.
#[derive(Clone, Debug, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Reply {
    pub fn json(status: u16, value: &Value) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            headers: Vec::new(),
            body: Bytes::from(serde_json::to_vec(value).unwrap_or_default()),
        }
    }

    /// The JECP error envelope with the error's status and headers.
    pub fn error(error: &JecpError, request_id: Option<&str>, links: &HubLinks) -> Reply {
        let mut reply = Reply::json(error.http_status(), &error.to_envelope(request_id, links));
        if let Some(seconds) = error.retry_after_seconds {
            reply
                .headers
                .push(("Retry-After".into(), seconds.to_string()));
        }
        for (name, value) in &error.headers {
            reply.headers.push(((*name).to_owned(), value.clone()));
        }
        reply
    }

    /// The registration endpoint's error shape: `{"error": "<string>"}`
    /// (the SDK reads a string there, CLIENT-COMPAT A1).
    pub fn plain_error(status: u16, message: &str) -> Reply {
        Reply::json(status, &serde_json::json!({ "error": message }))
    }

    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Reply {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}
