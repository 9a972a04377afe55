//! How a job ended, shared by every way a job runs (worker, play, ad hoc, fallback), so that
//! none of them imports another to learn it and data keeps flowing one way to the worker.

/// Exit code of a canceled or timed-out job, as ansible-runner uses it.
pub const RC_CANCELED: i32 = 254;

/// How a job ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// `successful`, `failed`, `canceled` or `timeout`.
    pub status: &'static str,
    /// The exit code (also the `rc` artifact).
    pub rc: i32,
    /// Why, when it did not succeed; sent as `job_explanation`.
    pub explanation: Option<String>,
}
