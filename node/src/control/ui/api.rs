//! The UI's routes behind the session (see [`super::guard::require_session`]): what the
//! page asks and the buttons do. Each answers JSON, or an [`ErrorJson`] the page shows.
//!
//! [`ErrorJson`]: super::super::ErrorJson

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::super::server::{error, ndjson, parse_body};
use super::super::{ControlHandler, GetRequest, SearchRequest};
use super::guard::SessionId;
use super::{DownloadAction, MAX_UI_SEARCH_BYTES, MAX_UI_SEARCH_WORDS, Ui};

/// How many results a search from the UI asks for.
const UI_WANT: u32 = 100;

pub async fn state<H: ControlHandler>(State(ui): State<Arc<Ui<H>>>) -> Response {
    Json(ui.state().await).into_response()
}

/// `POST /ui/api/search` body: the words as typed.
#[derive(Debug, Serialize, Deserialize)]
pub struct UiSearch {
    pub words: String,
}

impl UiSearch {
    /// The search request, or why the words are refused (shown to the user).
    pub fn request(&self) -> Result<SearchRequest, String> {
        if self.words.len() > MAX_UI_SEARCH_BYTES {
            return Err(format!(
                "the search is too long ({} bytes; at most {MAX_UI_SEARCH_BYTES})",
                self.words.len()
            ));
        }
        let keywords: Vec<String> = self.words.split_whitespace().map(String::from).collect();
        if keywords.len() > MAX_UI_SEARCH_WORDS {
            return Err(format!(
                "too many words ({}; at most {MAX_UI_SEARCH_WORDS})",
                keywords.len()
            ));
        }
        let request = SearchRequest {
            keywords,
            want: UI_WANT,
        };
        request.validate()?;
        Ok(request)
    }
}

pub async fn search<H: ControlHandler>(
    State(ui): State<Arc<Ui<H>>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let words: UiSearch = match parse_body(body, "search") {
        Ok(words) => words,
        Err(response) => return *response,
    };
    let request = match words.request() {
        Ok(request) => request,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let Ok(permit) = Arc::clone(&ui.searches).try_acquire_owned() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many searches running at once; try again shortly",
        );
    };
    match ui.handler.search(request).await {
        Ok(results) => ndjson(results, Some(permit)),
        Err(message) => error(StatusCode::SERVICE_UNAVAILABLE, message),
    }
}

/// The body of a download request or action: which content.
#[derive(Debug, Serialize, Deserialize)]
pub struct ContentRef {
    pub content_id: String,
}

pub async fn get_content<H: ControlHandler>(
    State(ui): State<Arc<Ui<H>>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let content: ContentRef = match parse_body(body, "download") {
        Ok(content) => content,
        Err(response) => return *response,
    };
    let request = GetRequest {
        content_id: content.content_id,
        out: None,
    };
    // The download belongs to the daemon: dropping its events does not stop it, and its
    // progress reaches the page with the status events.
    match ui.handler.get(request).await {
        Ok(_events) => (StatusCode::ACCEPTED, Json(serde_json::json!({}))).into_response(),
        Err(message) => error(StatusCode::BAD_REQUEST, message),
    }
}

pub async fn download<H: ControlHandler>(
    State(ui): State<Arc<Ui<H>>>,
    Path(action): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let action = match action.as_str() {
        "pause" => DownloadAction::Pause,
        "resume" => DownloadAction::Resume,
        "cancel" => DownloadAction::Cancel,
        _ => return error(StatusCode::NOT_FOUND, "no such download action"),
    };
    let content: ContentRef = match parse_body(body, "download") {
        Ok(content) => content,
        Err(response) => return *response,
    };
    match ui.handler.download_action(content.content_id, action).await {
        Ok(()) => Json(serde_json::json!({})).into_response(),
        Err(message) => error(StatusCode::BAD_REQUEST, message),
    }
}

pub async fn promote<H: ControlHandler>(State(ui): State<Arc<Ui<H>>>) -> Response {
    match ui.handler.promote().await {
        Ok(answer) => Json(answer).into_response(),
        Err(message) => error(StatusCode::BAD_REQUEST, message),
    }
}

pub async fn demote<H: ControlHandler>(State(ui): State<Arc<Ui<H>>>) -> Response {
    match ui.handler.demote().await {
        Ok(()) => Json(serde_json::json!({ "role": "leaf" })).into_response(),
        Err(message) => error(StatusCode::BAD_REQUEST, message),
    }
}

pub async fn logout<H: ControlHandler>(
    State(ui): State<Arc<Ui<H>>>,
    Extension(SessionId(session)): Extension<SessionId>,
) -> Response {
    ui.logins().end(&session);
    let expired = format!(
        "{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
        ui.cookie_name()
    );
    let mut response = Json(serde_json::json!({})).into_response();
    if let Ok(value) = header::HeaderValue::from_str(&expired) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_words_are_capped() {
        let ok = UiSearch {
            words: "  abbey   road ".into(),
        };
        assert_eq!(ok.request().unwrap().keywords, ["abbey", "road"]);
        let long = UiSearch {
            words: "a".repeat(MAX_UI_SEARCH_BYTES + 1),
        };
        assert!(long.request().unwrap_err().contains("too long"));
        let many = UiSearch {
            words: "a ".repeat(MAX_UI_SEARCH_WORDS + 1),
        };
        assert!(many.request().unwrap_err().contains("too many words"));
        let empty = UiSearch {
            words: "   ".into(),
        };
        assert!(empty.request().is_err());
    }
}
