//! What the IdP's endpoints see of a request and answer with.

use serde_json::Value;

/// A request as the endpoints see it.
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub cookie: Option<&'a str>,
    pub authorization: Option<&'a str>,
    pub body: &'a str,
}

/// An answer: status, content type, extra headers, body.
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(status: u16, body: Value) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            headers: Vec::new(),
            body: body.to_string().into_bytes(),
        }
    }

    pub fn html(status: u16, body: String) -> Reply {
        Reply {
            status,
            content_type: "text/html; charset=utf-8",
            headers: Vec::new(),
            body: body.into_bytes(),
        }
    }

    pub fn redirect(location: String) -> Reply {
        Reply {
            status: 302,
            content_type: "text/plain",
            headers: vec![("Location", location)],
            body: Vec::new(),
        }
    }
}
