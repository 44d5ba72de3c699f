//! Client → server frames, and the one parser that turns raw text into them.
//!
//! Parse, don't validate: after [`parse_client_frame`] every id is a typed id, every text
//! is within bounds, and nothing downstream checks again. Errors carry a stable
//! [`ErrorCode`] and a message that names the offending field.
use serde_json::{Map, Value};

use crate::codes::ErrorCode;
use crate::ids::{MessageId, RunId, ThreadId};

/// Longest accepted `client_message_id`, in bytes.
pub const MAX_CLIENT_MESSAGE_ID: usize = 128;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientFrame {
    UserMessage(UserMessage),
    StopAgent { run_id: RunId },
    Resume { run_id: RunId, after_seq: u64 },
    Ping,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserMessage {
    /// Non-empty after trimming; bounded by the frame size limit. Empty for a
    /// [`Branch::Regenerate`], which answers a stored message again.
    pub text: String,
    pub thread_id: Option<ThreadId>,
    pub client_message_id: Option<String>,
    /// Where in the thread the message goes; `None`: after the thread's latest message.
    /// Always with a `thread_id`.
    pub branch: Option<Branch>,
}

/// A message placed somewhere other than after the thread's latest message. Earlier
/// messages are never changed: an edit or a regenerate starts a new branch beside them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Branch {
    /// `parent_id`: continues the branch that ends at this message.
    After(MessageId),
    /// `edit_of`: replaces this user message on a new branch (same parent as the original).
    EditOf(MessageId),
    /// `regenerate`: answers this user message again; `text` is absent.
    Regenerate(MessageId),
}

impl Branch {
    /// The field that carries it on the wire.
    pub fn field(self) -> &'static str {
        match self {
            Self::After(_) => "parent_id",
            Self::EditOf(_) => "edit_of",
            Self::Regenerate(_) => "regenerate",
        }
    }

    pub fn message_id(self) -> MessageId {
        match self {
            Self::After(m) | Self::EditOf(m) | Self::Regenerate(m) => m,
        }
    }
}

/// Why a frame was refused. `code` is stable; `message` is for humans.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct ClientError {
    pub code: ErrorCode,
    pub message: String,
    /// The `client_message_id` of the refused frame, when it could be read.
    pub client_message_id: Option<String>,
}

impl ClientError {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), client_message_id: None }
    }
}

/// Parses one text frame. `max_bytes` is the frame limit (default 8192).
pub fn parse_client_frame(text: &str, max_bytes: usize) -> Result<ClientFrame, ClientError> {
    if text.len() > max_bytes {
        return Err(ClientError::new(
            ErrorCode::MessageTooLarge,
            format!("frame is {} bytes; the limit is {max_bytes}", text.len()),
        ));
    }
    let value: Value =
        serde_json::from_str(text).map_err(|e| ClientError::new(ErrorCode::InvalidJson, format!("not valid JSON: {e}")))?;
    let Value::Object(obj) = value else {
        return Err(ClientError::new(ErrorCode::InvalidJson, "a frame must be a JSON object"));
    };
    let kind = match obj.get("type") {
        None => return Err(ClientError::new(ErrorCode::MissingField, "field `type` is required")),
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(ClientError::new(ErrorCode::InvalidField, "field `type` must be a string")),
    };
    match kind {
        "user_message" => parse_user_message(&obj),
        "stop_agent" => Ok(ClientFrame::StopAgent { run_id: required_id(&obj, "run_id")? }),
        "resume" => Ok(ClientFrame::Resume {
            run_id: required_id(&obj, "run_id")?,
            after_seq: optional_u64(&obj, "after_seq")?.unwrap_or(0),
        }),
        "ping" => Ok(ClientFrame::Ping),
        other => Err(ClientError::new(ErrorCode::UnknownType, format!("unknown frame type `{}`", truncate(other, 64)))),
    }
}

fn parse_user_message(obj: &Map<String, Value>) -> Result<ClientFrame, ClientError> {
    // Read the correlation id first so that every later error can carry it back.
    let client_message_id = match obj.get("client_message_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_CLIENT_MESSAGE_ID => Some(s.clone()),
        Some(_) => {
            return Err(ClientError::new(
                ErrorCode::InvalidField,
                format!("field `client_message_id` must be a string of 1 to {MAX_CLIENT_MESSAGE_ID} bytes"),
            ))
        }
    };
    let with_id = |mut e: ClientError| {
        e.client_message_id = client_message_id.clone();
        e
    };
    let mut branches = Vec::new();
    for (field, make) in
        [("parent_id", Branch::After as fn(MessageId) -> Branch), ("edit_of", Branch::EditOf), ("regenerate", Branch::Regenerate)]
    {
        if let Some(id) = optional_id(obj, field).map_err(with_id)? {
            branches.push(make(id));
        }
    }
    if branches.len() > 1 {
        let e = ClientError::new(ErrorCode::InvalidField, "only one of `parent_id`, `edit_of` and `regenerate` may be given");
        return Err(with_id(e));
    }
    let branch = branches.pop();
    let thread_id = optional_id(obj, "thread_id").map_err(with_id)?;
    if let (Some(b), None) = (branch, thread_id) {
        let e = ClientError::new(ErrorCode::MissingField, format!("field `thread_id` is required with `{}`", b.field()));
        return Err(with_id(e));
    }
    let text = match (obj.get("text"), branch) {
        (None | Some(Value::Null), Some(Branch::Regenerate(_))) => String::new(),
        (Some(v), Some(Branch::Regenerate(_))) if !v.is_null() => {
            let e = ClientError::new(
                ErrorCode::InvalidField,
                "a `regenerate` carries no `text`: it answers the stored message again",
            );
            return Err(with_id(e));
        }
        (None | Some(Value::Null), _) => {
            return Err(with_id(ClientError::new(ErrorCode::MissingField, "field `text` is required")))
        }
        (Some(Value::String(s)), _) => {
            if s.trim().is_empty() {
                return Err(with_id(ClientError::new(ErrorCode::InvalidField, "field `text` must not be empty")));
            }
            s.clone()
        }
        (Some(_), _) => return Err(with_id(ClientError::new(ErrorCode::InvalidField, "field `text` must be a string"))),
    };
    Ok(ClientFrame::UserMessage(UserMessage { text, thread_id, client_message_id, branch }))
}

fn required_id<T: std::str::FromStr>(obj: &Map<String, Value>, field: &str) -> Result<T, ClientError> {
    optional_id(obj, field)?.ok_or_else(|| ClientError::new(ErrorCode::MissingField, format!("field `{field}` is required")))
}

fn optional_id<T: std::str::FromStr>(obj: &Map<String, Value>, field: &str) -> Result<Option<T>, ClientError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => s
            .parse()
            .map(Some)
            .map_err(|_| ClientError::new(ErrorCode::InvalidField, format!("field `{field}` must be a UUID string"))),
        Some(_) => Err(ClientError::new(ErrorCode::InvalidField, format!("field `{field}` must be a UUID string"))),
    }
}

fn optional_u64(obj: &Map<String, Value>, field: &str) -> Result<Option<u64>, ClientError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| ClientError::new(ErrorCode::InvalidField, format!("field `{field}` must be a non-negative integer"))),
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MAX: usize = 8192;

    fn code(text: &str) -> ErrorCode {
        parse_client_frame(text, MAX).unwrap_err().code
    }

    #[test]
    fn parses_every_frame_type() {
        let run = RunId::new();
        let thread = ThreadId::new();
        assert_eq!(parse_client_frame(r#"{"type":"ping"}"#, MAX), Ok(ClientFrame::Ping));
        assert_eq!(
            parse_client_frame(&format!(r#"{{"type":"stop_agent","run_id":"{run}"}}"#), MAX),
            Ok(ClientFrame::StopAgent { run_id: run })
        );
        assert_eq!(
            parse_client_frame(&format!(r#"{{"type":"resume","run_id":"{run}","after_seq":7}}"#), MAX),
            Ok(ClientFrame::Resume { run_id: run, after_seq: 7 })
        );
        let m = format!(r#"{{"type":"user_message","text":"hi","thread_id":"{thread}","client_message_id":"c1"}}"#);
        assert_eq!(
            parse_client_frame(&m, MAX),
            Ok(ClientFrame::UserMessage(UserMessage {
                text: "hi".into(),
                thread_id: Some(thread),
                client_message_id: Some("c1".into()),
                branch: None
            }))
        );
    }

    #[test]
    fn refuses_bad_frames_with_stable_codes() {
        assert_eq!(code("{"), ErrorCode::InvalidJson);
        assert_eq!(code("[1,2]"), ErrorCode::InvalidJson);
        assert_eq!(code(r#""x""#), ErrorCode::InvalidJson);
        assert_eq!(code(r#"{"text":"x"}"#), ErrorCode::MissingField);
        assert_eq!(code(r#"{"type":5}"#), ErrorCode::InvalidField);
        assert_eq!(code(r#"{"type":"launch_missiles"}"#), ErrorCode::UnknownType);
        assert_eq!(code(r#"{"type":"user_message"}"#), ErrorCode::MissingField);
        assert_eq!(code(r#"{"type":"user_message","text":42}"#), ErrorCode::InvalidField);
        assert_eq!(code(r#"{"type":"user_message","text":"   "}"#), ErrorCode::InvalidField);
        assert_eq!(code(r#"{"type":"user_message","text":"a","thread_id":"nope"}"#), ErrorCode::InvalidField);
        assert_eq!(code(r#"{"type":"stop_agent"}"#), ErrorCode::MissingField);
        assert_eq!(
            code(r#"{"type":"resume","run_id":"0190a0a0-0000-7000-8000-000000000000","after_seq":-1}"#),
            ErrorCode::InvalidField
        );
        assert_eq!(code(&format!(r#"{{"type":"user_message","text":"{}"}}"#, "a".repeat(MAX))), ErrorCode::MessageTooLarge);
        let nested = format!("{}{}", "[".repeat(1_000), "]".repeat(1_000));
        assert_eq!(code(&nested), ErrorCode::InvalidJson);
    }

    #[test]
    fn a_message_may_branch_from_an_earlier_one() {
        let thread = ThreadId::new();
        let m = MessageId::new();
        let parse =
            |extra: &str| parse_client_frame(&format!(r#"{{"type":"user_message","thread_id":"{thread}",{extra}}}"#), MAX);
        for (field, branch) in [("parent_id", Branch::After(m)), ("edit_of", Branch::EditOf(m))] {
            match parse(&format!(r#""text":"hi","{field}":"{m}""#)) {
                Ok(ClientFrame::UserMessage(u)) => {
                    assert_eq!((u.branch, u.text.as_str(), u.thread_id), (Some(branch), "hi", Some(thread)))
                }
                other => panic!("{field}: {other:?}"),
            }
        }
        match parse(&format!(r#""regenerate":"{m}","client_message_id":"r1""#)) {
            Ok(ClientFrame::UserMessage(u)) => assert_eq!((u.branch, u.text.as_str()), (Some(Branch::Regenerate(m)), "")),
            other => panic!("regenerate: {other:?}"),
        }
        // A regenerate has no text; an edit needs one; one branch at a time; always in a thread.
        let e = parse(&format!(r#""regenerate":"{m}","text":"again","client_message_id":"r2""#)).unwrap_err();
        assert_eq!((e.code, e.client_message_id.as_deref()), (ErrorCode::InvalidField, Some("r2")));
        assert_eq!(parse(&format!(r#""edit_of":"{m}""#)).unwrap_err().code, ErrorCode::MissingField);
        assert_eq!(parse(&format!(r#""text":"a","edit_of":"{m}","parent_id":"{m}""#)).unwrap_err().code, ErrorCode::InvalidField);
        assert_eq!(parse(r#""text":"a","edit_of":"nope""#).unwrap_err().code, ErrorCode::InvalidField);
        assert_eq!(parse(r#""text":"a","regenerate":7"#).unwrap_err().code, ErrorCode::InvalidField);
        let e = parse_client_frame(&format!(r#"{{"type":"user_message","text":"a","edit_of":"{m}"}}"#), MAX).unwrap_err();
        assert_eq!(e.code, ErrorCode::MissingField);
        assert!(e.message.contains("thread_id"), "{}", e.message);
    }

    #[test]
    fn errors_carry_the_client_message_id() {
        let e = parse_client_frame(r#"{"type":"user_message","text":"","client_message_id":"abc"}"#, MAX).unwrap_err();
        assert_eq!(e.client_message_id.as_deref(), Some("abc"));
    }

    #[test]
    fn a_frame_of_exactly_the_limit_is_accepted_and_one_byte_more_is_refused() {
        let frame = r#"{"type":"ping"}"#;
        assert_eq!(parse_client_frame(frame, frame.len()), Ok(ClientFrame::Ping));
        let e = parse_client_frame(frame, frame.len() - 1).unwrap_err();
        assert_eq!(e.code, ErrorCode::MessageTooLarge);
        assert!(e.message.contains(&frame.len().to_string()), "{}", e.message);
    }

    #[test]
    fn resume_without_after_seq_resumes_from_the_start() {
        let run = RunId::new();
        assert_eq!(
            parse_client_frame(&format!(r#"{{"type":"resume","run_id":"{run}"}}"#), MAX),
            Ok(ClientFrame::Resume { run_id: run, after_seq: 0 })
        );
        assert_eq!(
            parse_client_frame(&format!(r#"{{"type":"resume","run_id":"{run}","after_seq":null}}"#), MAX),
            Ok(ClientFrame::Resume { run_id: run, after_seq: 0 })
        );
        assert_eq!(code(&format!(r#"{{"type":"resume","run_id":"{run}","after_seq":"3"}}"#)), ErrorCode::InvalidField);
    }

    #[test]
    fn ids_must_be_uuid_strings() {
        assert_eq!(code(r#"{"type":"stop_agent","run_id":7}"#), ErrorCode::InvalidField);
        assert_eq!(code(r#"{"type":"stop_agent","run_id":"not-a-uuid"}"#), ErrorCode::InvalidField);
        assert_eq!(code(r#"{"type":"stop_agent","run_id":null}"#), ErrorCode::MissingField);
        assert_eq!(code(r#"{"type":"user_message","text":"a","thread_id":5}"#), ErrorCode::InvalidField);
        assert_eq!(
            parse_client_frame(r#"{"type":"user_message","text":"a","thread_id":null}"#, MAX),
            Ok(ClientFrame::UserMessage(UserMessage {
                text: "a".into(),
                thread_id: None,
                client_message_id: None,
                branch: None
            }))
        );
        let e = parse_client_frame(r#"{"type":"stop_agent"}"#, MAX).unwrap_err();
        assert!(e.message.contains("run_id"), "the message names the field: {}", e.message);
    }

    #[test]
    fn a_client_message_id_is_one_to_128_bytes_of_text() {
        let with_cid = |cid: &str| format!(r#"{{"type":"user_message","text":"hi","client_message_id":"{cid}"}}"#);
        let longest = "c".repeat(MAX_CLIENT_MESSAGE_ID);
        match parse_client_frame(&with_cid(&longest), MAX) {
            Ok(ClientFrame::UserMessage(m)) => assert_eq!(m.client_message_id, Some(longest)),
            other => panic!("a 128-byte id is accepted: {other:?}"),
        }
        assert_eq!(code(&with_cid(&"c".repeat(MAX_CLIENT_MESSAGE_ID + 1))), ErrorCode::InvalidField);
        assert_eq!(code(&with_cid("")), ErrorCode::InvalidField);
        assert_eq!(code(r#"{"type":"user_message","text":"hi","client_message_id":7}"#), ErrorCode::InvalidField);
        assert_eq!(
            parse_client_frame(r#"{"type":"user_message","text":"hi","client_message_id":null}"#, MAX),
            Ok(ClientFrame::UserMessage(UserMessage {
                text: "hi".into(),
                thread_id: None,
                client_message_id: None,
                branch: None
            }))
        );
    }

    #[test]
    fn an_unknown_type_is_named_in_the_error_up_to_64_characters() {
        let e = parse_client_frame(r#"{"type":"launch"}"#, MAX).unwrap_err();
        assert_eq!(e.message, "unknown frame type `launch`");
        let long = "é".repeat(100);
        let e = parse_client_frame(&format!(r#"{{"type":"{long}"}}"#), MAX).unwrap_err();
        assert_eq!(e.message, format!("unknown frame type `{}`", "é".repeat(64)));
    }

    /// Cases per fuzz property: a bounded run in CI; `APEX_FUZZ_CASES=200000 cargo test -p
    /// apex-protocol` is the longer run (docs/security.md).
    fn fuzz_cases() -> u32 {
        std::env::var("APEX_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000)
    }

    /// Codes the parser may answer with: anything else would be a new, undocumented code.
    const PARSER_CODES: [ErrorCode; 5] = [
        ErrorCode::InvalidJson,
        ErrorCode::MessageTooLarge,
        ErrorCode::UnknownType,
        ErrorCode::MissingField,
        ErrorCode::InvalidField,
    ];

    /// Frames a client sends, to mutate.
    const SEEDS: [&str; 5] = [
        r#"{"type":"user_message","text":"Analyze my AI costs","client_message_id":"c-1"}"#,
        r#"{"type":"user_message","text":"hi","thread_id":"0190a0a0-0000-7000-8000-000000000001"}"#,
        r#"{"type":"resume","run_id":"0190a0a0-0000-7000-8000-000000000000","after_seq":3}"#,
        r#"{"type":"stop_agent","run_id":"0190a0a0-0000-7000-8000-000000000000"}"#,
        r#"{"type":"ping"}"#,
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(fuzz_cases()))]

        #[test]
        fn never_panics_on_arbitrary_text(s in ".{0,300}") {
            let _ = parse_client_frame(&s, MAX);
        }

        /// Byte-level mutations of real frames (flips, insertions, deletions, truncation):
        /// every answer is a frame or one of the documented codes, and the same each time.
        #[test]
        fn mutated_frames_get_a_frame_or_a_documented_code(
            seed in 0..SEEDS.len(),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..4), 1..8),
            limit in prop_oneof![Just(MAX), 8usize..120],
        ) {
            let mut bytes = SEEDS[seed].as_bytes().to_vec();
            for (at, byte, op) in edits {
                let len = bytes.len();
                let i = at.index(len.max(1));
                match op {
                    0 if len > 0 => bytes[i.min(len - 1)] = byte,
                    1 => bytes.insert(i.min(len), byte),
                    2 if len > 0 => { bytes.remove(i.min(len - 1)); }
                    _ => bytes.truncate(i),
                }
            }
            // The transport hands the parser UTF-8 only (other text is closed with 1007).
            let text = String::from_utf8_lossy(&bytes);
            let first = parse_client_frame(&text, limit);
            prop_assert_eq!(&first, &parse_client_frame(&text, limit));
            if let Err(e) = first {
                prop_assert!(PARSER_CODES.contains(&e.code), "{:?}", e.code);
                prop_assert!(!e.message.is_empty());
                prop_assert!(e.message.len() < 512, "an error message echoes a bounded amount of the input");
            }
        }

        #[test]
        fn never_panics_on_json_shaped_input(
            ty in prop_oneof![
                Just("user_message".to_string()), Just("stop_agent".to_string()), Just("resume".to_string()),
                Just("ping".to_string()), ".{0,12}",
            ],
            key in prop_oneof![
                Just("text".to_string()), Just("run_id".to_string()), Just("thread_id".to_string()),
                Just("after_seq".to_string()), Just("client_message_id".to_string()), ".{0,8}",
            ],
            val in prop_oneof![
                Just(Value::Null), any::<bool>().prop_map(Value::from), any::<i64>().prop_map(Value::from),
                any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map(Value::Number).unwrap_or(Value::Null)),
                ".{0,40}".prop_map(Value::from),
            ],
        ) {
            let mut obj = Map::new();
            obj.insert("type".into(), Value::from(ty));
            obj.insert(key, val);
            let text = Value::Object(obj).to_string();
            if let Ok(ClientFrame::UserMessage(m)) = parse_client_frame(&text, MAX) {
                prop_assert!(!m.text.trim().is_empty());
            }
        }

        #[test]
        fn user_messages_round_trip(text in "[a-zA-Z0-9 ?!.,]{1,200}", cid in proptest::option::of("[a-z0-9-]{1,40}")) {
            prop_assume!(!text.trim().is_empty());
            let mut obj = serde_json::json!({"type": "user_message", "text": text});
            if let Some(c) = &cid { obj["client_message_id"] = Value::from(c.clone()); }
            let parsed = parse_client_frame(&obj.to_string(), MAX).unwrap();
            prop_assert_eq!(parsed, ClientFrame::UserMessage(UserMessage { text, thread_id: None, client_message_id: cid, branch: None }));
        }
    }
}
