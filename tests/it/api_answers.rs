//! Reading the REST API's answers, as `api` (over the process) and
//! `api_router` (in-process) both get them: a status and a JSON body.

use reqwest::StatusCode;
use serde_json::Value;

/// Asserts an error answer: its status and stable code. Its message.
pub fn failed((status, body): (StatusCode, Value), expected: StatusCode, code: &str) -> String {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    body["error"]["message"].as_str().unwrap().to_string()
}

/// Asserts a successful answer's status. Its body.
pub fn ok((status, body): (StatusCode, Value), expected: StatusCode) -> Value {
    assert_eq!(status, expected, "{body}");
    body
}
