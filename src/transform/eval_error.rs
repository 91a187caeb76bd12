//! Why a row could not be transformed: one type for every step of a transform (casts,
//! arithmetic, functions, lookups), below all of them so that each can return it.

/// Why a row could not be transformed; the message goes into the dead-letter table.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct EvalError {
    pub message: String,
}

impl EvalError {
    pub fn new(message: impl Into<String>) -> Self {
        EvalError {
            message: message.into(),
        }
    }
}
