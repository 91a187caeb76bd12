//! What can stop a verification, each with what was being done. A verification that runs to
//! its end is never an error, whatever it found: divergence is a result ([`super::VerifyReport`]).

use crate::pg::connect::ConnectError;

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("source: {context}")]
    Source {
        context: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("target: {context}")]
    Target {
        context: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("fence: {context}")]
    Fence {
        context: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The plan cannot be verified as written (fix the plan).
    #[error("plan: {0}")]
    Plan(String),
    #[error("a transform worker panicked")]
    WorkerPanicked,
}

impl VerifyError {
    pub(crate) fn source(context: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> Self {
        let context = context.into();
        move |source| VerifyError::Source { context, source }
    }

    pub(crate) fn target(context: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> Self {
        let context = context.into();
        move |source| VerifyError::Target { context, source }
    }
}
